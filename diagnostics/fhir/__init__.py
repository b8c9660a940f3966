"""Screening results as FHIR R4 for the EMR: the physician who ordered a study sees the result.

Mapped after the HL7 "DICOM SR to FHIR" guide and IHE's imaging report profiles: a transaction
Bundle holding a `DiagnosticReport`, one `Observation` per finding and a `Device` for the
model. Built as plain JSON (`build`), checked against `fhir.resources`' R4B models (`validate`)
before it is written or sent, and posted by `client`. Texts for people are in the report's
language (`text`, through `diagnostics.i18n`); codes are the same in every language. A study
that was not analysed gets a report that says so, never a normal one.
"""

from __future__ import annotations

from diagnostics.fhir.build import build_bundle, identifier_of
from diagnostics.fhir.context import Concept, PatientIdentity, Reader, ReportContext
from diagnostics.fhir.text import conclusion_text
from diagnostics.fhir.validate import FhirBundleError, validate_bundle

__all__ = [
    "Concept",
    "FhirBundleError",
    "PatientIdentity",
    "Reader",
    "ReportContext",
    "build_bundle",
    "conclusion_text",
    "identifier_of",
    "validate_bundle",
]
