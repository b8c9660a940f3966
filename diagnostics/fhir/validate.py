"""A bundle is checked against `fhir.resources`' R4B models before it is written or sent.

`fhir.resources` checks structure, types and cardinality, not code values, so the codes this
project relies on (statuses, the transaction's requests) are checked here as well.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fhir.resources.R4B.bundle import Bundle
from pydantic import ValidationError

from diagnostics.errors import ReportError

STATUSES: Mapping[str, frozenset[str]] = {
    "DiagnosticReport": frozenset({"registered", "partial", "preliminary", "final", "amended"}),
    "Observation": frozenset({"registered", "preliminary", "final", "amended"}),
    "Device": frozenset({"active", "inactive", "entered-in-error", "unknown"}),
}
METHODS = frozenset({"POST", "PUT"})


class FhirBundleError(ReportError):
    """A FHIR bundle does not validate; it is never sent."""


def validate_bundle(data: Mapping[str, Any]) -> None:
    """Raise `FhirBundleError` naming the first problems unless `data` is a valid R4 transaction."""
    try:
        Bundle.model_validate(dict(data))
    except ValidationError as exc:
        # Where and what only: the offending values may be patient identifiers, and this
        # message reaches logs, the audit table and the outbox's last error.
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5]
        )
        raise FhirBundleError(f"the FHIR bundle does not validate: {problems}") from exc
    except (ValueError, TypeError) as exc:
        raise FhirBundleError(f"the FHIR bundle does not validate ({type(exc).__name__})") from exc
    if data.get("type") != "transaction":
        raise FhirBundleError(f"the FHIR bundle is a {data.get('type')!r}, not a transaction")
    seen: set[str] = set()
    for index, entry in enumerate(data.get("entry") or []):
        where = f"entry {index}"
        resource = entry.get("resource") or {}
        kind = resource.get("resourceType")
        url = entry.get("fullUrl")
        if not url or url in seen:
            raise FhirBundleError(f"{where}: a transaction entry needs a unique fullUrl")
        seen.add(url)
        request = entry.get("request") or {}
        if request.get("method") not in METHODS:
            raise FhirBundleError(f"{where}: request method {request.get('method')!r}")
        status = resource.get("status")
        allowed = STATUSES.get(str(kind))
        if allowed is not None and status is not None and status not in allowed:
            raise FhirBundleError(
                f"{where}: {kind} status {status!r} is not one of {sorted(allowed)}"
            )


def load_bundle(path: Path) -> dict[str, Any]:
    """Read a bundle written earlier and validate it again: what is sent is what validated."""
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise FhirBundleError(f"{path.name}: the FHIR bundle cannot be read ({exc})") from exc
    if not isinstance(data, dict):
        raise FhirBundleError(f"{path.name}: not a FHIR resource (a JSON object)")
    validate_bundle(data)
    return data
