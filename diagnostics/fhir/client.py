"""Posting a transaction Bundle to a FHIR server, with credentials read from a file.

The credentials file holds one line, `Bearer <token>` or `Basic <user>:<password>`. It is read
at each delivery (so a rotated token is picked up) and its content never appears in a message
or a log line.
"""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from pathlib import Path

from diagnostics.errors import ConfigurationError, DiagnosticsError
from diagnostics.fhir.validate import load_bundle

FHIR_JSON = "application/fhir+json"


class FhirDeliveryError(DiagnosticsError):
    """The FHIR server did not take the bundle this time; the outbox retries with backoff."""


def authorization(auth_file: Path | None) -> str | None:
    """The Authorization header value from `auth_file` (None without one)."""
    if auth_file is None:
        return None
    try:
        text = auth_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"results auth file {auth_file}: cannot be read ({exc})") from None
    scheme, _, secret = text.partition(" ")
    secret = secret.strip()
    if scheme.lower() == "bearer" and secret and "\n" not in secret:
        return f"Bearer {secret}"
    if scheme.lower() == "basic" and ":" in secret and "\n" not in secret:
        return "Basic " + base64.b64encode(secret.encode("utf-8")).decode("ascii")
    raise ConfigurationError(
        f"results auth file {auth_file}: expected one line, 'Bearer <token>' or "
        "'Basic <user>:<password>'"
    )


def post_bundle(path: Path, base_url: str, auth: str | None, timeout_s: float = 60.0) -> None:
    """Validate the bundle at `path` again and post it to the server's base URL as a transaction.

    Raises `FhirBundleError` for a bundle that does not validate (nothing is sent) and
    `FhirDeliveryError` when the server is unreachable or does not accept it.
    """
    body = json.dumps(load_bundle(path), separators=(",", ":")).encode("utf-8")
    headers = {"Content-Type": FHIR_JSON, "Accept": FHIR_JSON}
    if auth:
        headers["Authorization"] = auth
    request = urllib.request.Request(base_url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            if response.status != 200:
                raise FhirDeliveryError(
                    f"{base_url}: FHIR transaction answered HTTP {response.status}"
                )
    except urllib.error.HTTPError as exc:
        reason = _outcome(exc)
        raise FhirDeliveryError(
            f"{base_url}: FHIR transaction answered HTTP {exc.code}{reason}"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        raise FhirDeliveryError(f"{base_url}: FHIR server not reachable: {exc}") from exc


def _outcome(error: urllib.error.HTTPError) -> str:
    """The first issue of an OperationOutcome, when the server sent one."""
    try:
        outcome = json.loads(error.read(65536))
        issue = outcome["issue"][0]
        text = issue.get("diagnostics") or issue.get("details", {}).get("text") or ""
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return ""
    return f": {' '.join(str(text).split())[:300]}" if text else ""
