"""The start-up banner of `diagnostics serve`: where the service listens and how to send it a
study, in commands that work as pasted. Apart from `diagnostics.serve` to keep that module
small; light to import (the CLI loads it before the server starts)."""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING

from diagnostics.constants import host_in_url

if TYPE_CHECKING:
    from diagnostics.service.settings import ServiceSettings


def _reach(address: str) -> str:
    """The host to put in the banner's commands: the bound address itself (`localhost` could
    resolve to the other IP version), or localhost when every interface answers."""
    if address in ("0.0.0.0", "::"):
        return "localhost"
    return host_in_url(address)


def _where(address: str, port: int) -> str:
    everywhere = address in ("0.0.0.0", "::")
    return f"{host_in_url(address)}:{port}" + (" (all interfaces)" if everywhere else "")


def usage(config: ServiceSettings, model: str, token_file: str | None = None) -> str:
    """How to send a study to this service, in commands that work as pasted: the token is
    read from its file when there is one (an administrator's shell rarely has the variable),
    and is never printed itself."""
    scheme = "https" if config.tls_cert else "http"
    base = f"{scheme}://{_reach(config.bind)}:{config.port}"
    source = f"$(head -n 1 {shlex.quote(token_file)})" if token_file else "$DIAGNOSTICS_API_TOKEN"
    auth = f'-H "Authorization: Bearer {source}" ' if config.api_tokens else ""
    lines = [
        f"diagnostics: serving {model} on {base} (storage {config.storage})",
        f"Listening: HTTP on {_where(config.bind, config.port)}, "
        + (
            f"DICOM on {_where(config.listen_dicom, config.dicom_port)} as AE {config.ae_title}"
            + (" (any called AE title accepted)" if config.accept_any_called_ae else "")
            if config.allow_ae
            else "DICOM off"
        ),
        "",
        "Screen a study now (the StudyResult comes back):",
        f'  curl {auth}-H "Content-Type: application/dicom" --data-binary @IM-0001.dcm '
        f"{base}/v1/screen",
        f"  curl {auth}-F file=@IM-0001.dcm -F file=@IM-0002.dcm {base}/v1/screen",
        "Store via DICOMweb STOW-RS (screened once the study is quiet):",
        f"  DICOMwebClient(url='{base}/dicomweb', headers={{'Authorization': 'Bearer ...'}})"
        ".store_instances([...])",
    ]
    if config.allow_ae:
        lines += [
            "Send over DICOM (C-STORE):",
            f"  dcmsend -aet {config.allow_ae[0]} -aec {shlex.quote(config.ae_title)} "
            f"{_reach(config.listen_dicom).strip('[]')} {config.dicom_port} IM-0001.dcm"
            "   # any transfer syntax, as stored",
        ]
    else:
        lines += ["DICOM listener off: add --allow-ae TITLE to accept C-STORE from a PACS."]
    lines += [
        "Results and worklist:",
        f"  curl {auth}{base}/v1/studies/<StudyInstanceUID>",
        f"  curl {auth}{base}/v1/studies/<StudyInstanceUID>/fhir   # as the EMR gets it",
        f"  curl {auth}'{base}/v1/worklist?status=analyzed&limit=20'",
        f"Review in a browser: {base}/ui/ (users: diagnostics users add; before any, a token)",
        f"Health {base}/readyz, metrics {base}/metrics, API docs {base}/docs",
    ]
    if config.insecure_dev and not config.api_tokens:
        lines += ["", "WARNING: --insecure-dev: no authentication. Never use with patient data."]
    return "\n".join(lines)
