"""Sending results back to a PACS: C-STORE (SCU) or DICOMweb STOW-RS.

Destinations are strings: `AE@HOST:PORT` for DIMSE, an `http(s)://` STOW-RS URL (the
studies endpoint of a DICOMweb server), or `fhir+http(s)://` and a FHIR server's base URL, which
gets the result as a FHIR transaction Bundle (`diagnostics.fhir`) instead of the DICOM files.
Every failure is a `SendError` with the reason; the outbox decides when to retry.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pydicom
from pydicom.errors import InvalidDicomError
from pynetdicom import AE

from diagnostics.errors import ConfigurationError, DiagnosticsError
from diagnostics.fhir.client import FhirDeliveryError, authorization, post_bundle
from diagnostics.fhir.validate import FhirBundleError

FHIR_PREFIX = "fhir+"
BUNDLE_SUFFIX = ".json"
"""FHIR bundles are the only JSON files among a result's outputs."""
DIMSE_DESTINATION = re.compile(r"^(?P<ae>[^@\\]{1,16})@(?P<host>[^:@\s]+):(?P<port>\d{1,5})$")


class SendError(DiagnosticsError):
    """A result could not be delivered this time; the outbox retries with backoff."""


@dataclass(frozen=True)
class Destination:
    text: str
    ae_title: str | None = None
    host: str | None = None
    port: int | None = None
    url: str | None = None
    fhir_url: str | None = None

    @classmethod
    def parse(cls, text: str) -> Destination:
        text = text.strip()
        _refuse_credentials(text)
        if text.startswith((FHIR_PREFIX + "http://", FHIR_PREFIX + "https://")):
            url = text.removeprefix(FHIR_PREFIX).rstrip("/")
            if not urlsplit(url).hostname:
                raise ConfigurationError(f"destination {text!r}: the FHIR base URL has no host")
            return cls(text, fhir_url=url)
        if text.startswith(("http://", "https://")):
            return cls(text, url=text.rstrip("/"))
        match = DIMSE_DESTINATION.match(text)
        if match is None or not 0 < int(match["port"]) < 65536:
            raise ConfigurationError(
                f"destination {text!r} is neither AE@HOST:PORT, an http(s) STOW-RS URL nor a "
                "fhir+http(s) FHIR server"
            )
        return cls(text, ae_title=match["ae"], host=match["host"], port=int(match["port"]))


def _refuse_credentials(text: str) -> None:
    """A URL's `user:password@` would be in exception texts, the outbox's last error, the
    audit trail and the logs: credentials have their own settings, kept out of all of them."""
    url = text.removeprefix(FHIR_PREFIX)
    if not url.startswith(("http://", "https://")):
        return
    parts = urlsplit(url)
    if "@" in parts.netloc:
        shown = text.replace(parts.netloc, parts.netloc.rsplit("@", 1)[1], 1)
        raise ConfigurationError(
            f"destination {shown}: credentials in the URL (user:password@) are refused, as they "
            "would be logged; give a STOW-RS token with --results-token and a FHIR server's "
            "credentials with --results-auth-file"
        )


def carries(destination: str, path: Path) -> bool:
    """Whether an output goes to a destination: FHIR servers get the bundles, PACSs the rest."""
    return destination.strip().startswith(FHIR_PREFIX) == (path.suffix == BUNDLE_SUFFIX)


def send(
    path: Path,
    destination: Destination,
    *,
    calling_ae: str,
    token: str | None = None,
    auth_file: Path | None = None,
) -> None:
    """Deliver one output file to `destination`, or raise `SendError`.

    `auth_file` holds the FHIR server's credentials (`diagnostics.fhir.client.authorization`).
    """
    if destination.fhir_url is not None:
        try:
            post_bundle(path, destination.fhir_url, authorization(auth_file))
        except (FhirDeliveryError, FhirBundleError, ConfigurationError) as exc:
            raise SendError(str(exc)) from exc
    elif destination.url is not None:
        _stow(path, destination.url, token)
    else:
        _c_store(path, destination, calling_ae)


def _c_store(path: Path, destination: Destination, calling_ae: str) -> None:
    try:
        ds = pydicom.dcmread(path)
    except (OSError, InvalidDicomError) as exc:
        raise SendError(f"{path.name}: the result file cannot be read ({exc})") from exc
    ae = AE(ae_title=calling_ae)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = 30
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    assert destination.host is not None and destination.port is not None
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title or "")
    if not assoc.is_established:
        raise SendError(f"{destination.text}: association not accepted (is the PACS up?)")
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    code = getattr(status, "Status", None)
    if code is None:
        raise SendError(f"{destination.text}: no C-STORE response (connection lost)")
    if code not in (0x0000, 0xB000, 0xB007, 0xB006):
        raise SendError(f"{destination.text}: C-STORE failed with status 0x{code:04X}")


def _stow(path: Path, url: str, token: str | None) -> None:
    boundary = uuid.uuid4().hex
    body = (
        f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + path.read_bytes()
        + f"\r\n--{boundary}--\r\n".encode()
    )
    headers = {
        "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
        "Accept": "application/dicom+json",
    }
    if token:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            if response.status not in (200, 202):
                raise SendError(f"{url}: STOW-RS answered HTTP {response.status}")
    except urllib.error.HTTPError as exc:
        raise SendError(f"{url}: STOW-RS answered HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise SendError(f"{url}: STOW-RS not reachable: {exc}") from exc
