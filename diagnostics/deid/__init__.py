"""De-identified research exports: the DICOM PS3.15 Basic Application Level Confidentiality
Profile applied to the intake store's instances, results and feedback.

Names are imported on first use, so that registering the `research-export` subcommand does
not load pydicom into every `diagnostics` invocation.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from diagnostics.deid.engine import Deidentifier, patient_key
    from diagnostics.deid.keys import Keys
    from diagnostics.deid.profile import Profile
    from diagnostics.deid.quarantine import quarantine_reason
    from diagnostics.deid.research_export import ExportOptions, ExportSummary, export_research

_MODULES = {
    "Deidentifier": "engine",
    "patient_key": "engine",
    "ExportOptions": "research_export",
    "ExportSummary": "research_export",
    "export_research": "research_export",
    "Keys": "keys",
    "Profile": "profile",
    "quarantine_reason": "quarantine",
}

__all__ = [
    "Deidentifier",
    "ExportOptions",
    "ExportSummary",
    "Keys",
    "Profile",
    "export_research",
    "patient_key",
    "quarantine_reason",
]


def __getattr__(name: str) -> object:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module 'diagnostics.deid' has no attribute {name!r}")
    return getattr(importlib.import_module(f"diagnostics.deid.{module}"), name)
