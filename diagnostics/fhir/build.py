"""One result version as a FHIR R4 transaction Bundle (DiagnosticReport, Observations, Device).

Mapped after the HL7 "DICOM SR to FHIR" guide: the report names the imaging study by its Study
Instance UID (`urn:dicom:uid`), each finding is an Observation derived from that study and made
by the model's Device, and the probability is the value with the operating point as its
reference range. The patient is referred to by identifier only: the EMR owns the Patient.

Idempotent by construction: every resource has a stable identifier per (study, result version,
model), the entries are conditional creates on it (`ifNoneExist`), and the bundle is the same
byte for byte each time it is built, so a resend never duplicates. A `final` bundle (the study
was read) updates the same DiagnosticReport and Observations in place (conditional update).
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from diagnostics.constants import MANUFACTURER
from diagnostics.fhir.context import Concept, Reader, ReportContext
from diagnostics.fhir.text import (
    conclusion_text,
    finding_name,
    interpretation_text,
    observation_note,
    operating_point_text,
    report_texts,
    status_text,
)
from diagnostics.fhir.validate import validate_bundle
from diagnostics.i18n import check_language
from diagnostics.reports._common import DISCLAIMER
from diagnostics.results import FindingResult, ModelRef, StudyResult

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
IDENTIFIER_SYSTEM = "urn:radiology-diagnostics:result"
"""Identifiers of reports and observations: `<study>-v<version>-<model sha256[:16]>[-<code>]`."""
DEVICE_SYSTEM = "urn:radiology-diagnostics:model-sha256"
STATUS_SYSTEM = "urn:radiology-diagnostics:screening-status"
CHEST_RADIOGRAPH = {"system": LOINC, "code": "30745-4", "display": "XR Chest Views"}
"""Views unspecified: a study may be one PA view (36643-5, "XR Chest 2 Views", would say two)."""
RADIOLOGY = [
    {"system": LOINC, "code": "LP29684-5", "display": "Radiology"},
    {
        "system": "http://terminology.hl7.org/CodeSystem/v2-0074",
        "code": "RAD",
        "display": "Radiology",
    },
]
IMAGING = {
    "system": "http://terminology.hl7.org/CodeSystem/observation-category",
    "code": "imaging",
    "display": "Imaging",
}
_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
_NAMESPACE = uuid.UUID("6f1c7a52-3f0e-4d8e-9b6e-5d1f2f3c8a10")


def identifier_of(result: StudyResult, version: int) -> str:
    """The stable identifier of one result version's report."""
    model = result.model.sha256[:16] if result.model is not None else "no-model"
    return f"{result.study_instance_uid}-v{version}-{model}"


def build_bundle(
    result: StudyResult,
    version: int,
    context: ReportContext,
    reader: Reader | None = None,
    language: str | None = None,
) -> dict[str, Any]:
    """The validated transaction Bundle: `preliminary` until `reader` marks it read, then `final`.

    Its texts are in `language`, by default the one the context recorded; the coded concepts
    are the same in every language. Raises `FhirBundleError` when the bundle does not validate
    (it must then not be sent), `ConfigurationError` for a language the project does not speak.
    """
    language = check_language(language or context.language)
    labels = report_texts(language)
    status = "final" if reader is not None else "preliminary"
    report_id = identifier_of(result, version)
    study = {
        "type": "ImagingStudy",
        "identifier": {"system": "urn:dicom:uid", "value": f"urn:oid:{result.study_instance_uid}"},
    }
    subject = _subject(context)
    effective = context.study_date or result.created
    entries: list[dict[str, Any]] = []
    device_url = None
    if result.model is not None:
        device = _device(result.model)
        device_url = _full_url(DEVICE_SYSTEM, result.model.sha256)
        entries.append(_entry(device_url, device, DEVICE_SYSTEM, result.model.sha256, final=False))
    observation_urls = []
    for finding in result.findings:
        value = f"{report_id}-{finding.code}"
        observation = _observation(finding, context, status, value, study, device_url, language)
        if subject:
            observation["subject"] = subject
        observation["effectiveDateTime"] = effective
        observation["issued"] = result.created
        url = _full_url(IDENTIFIER_SYSTEM, value)
        observation_urls.append(url)
        entries.append(_entry(url, observation, IDENTIFIER_SYSTEM, value, final=reader is not None))
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "language": language,
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": report_id}],
        "status": status,
        "category": [{"coding": RADIOLOGY, "text": labels["category"]}],
        "code": {"coding": [CHEST_RADIOGRAPH], "text": labels["code"]},
        "effectiveDateTime": effective,
        "issued": reader.read_at if reader is not None else result.created,
        "imagingStudy": [study],
        "conclusion": conclusion_text(result, language),
    }
    codes = _conclusion_codes(result, context.concepts, language)
    if codes:
        report["conclusionCode"] = codes
    if subject:
        report["subject"] = subject
    if context.accession_number:  # the order, as IHE's imaging reports name it
        report["basedOn"] = [_order(context.accession_number)]
    if reader is not None:
        report["resultsInterpreter"] = [
            {"identifier": {"system": "urn:radiology-diagnostics:actor", "value": reader.actor}}
        ]
    if observation_urls:
        report["result"] = [{"reference": url} for url in observation_urls]
    report_url = _full_url(IDENTIFIER_SYSTEM, report_id)
    entries.append(_entry(report_url, report, IDENTIFIER_SYSTEM, report_id, reader is not None))
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    validate_bundle(bundle)
    return bundle


def _subject(context: ReportContext) -> dict[str, Any] | None:
    if context.patient is None:
        return None
    return {"type": "Patient", "identifier": context.patient.identifier()}


def _order(accession_number: str) -> dict[str, Any]:
    accession = {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}
    return {
        "type": "ServiceRequest",
        "identifier": {"type": {"coding": [accession]}, "value": accession_number},
    }


def _device(model: ModelRef) -> dict[str, Any]:
    return {
        "resourceType": "Device",
        "identifier": [{"system": DEVICE_SYSTEM, "value": model.sha256}],
        "status": "active",
        "manufacturer": MANUFACTURER,
        "deviceName": [{"name": model.name, "type": "model-name"}],
        "type": {"text": "AI pre-screening model for chest radiographs"},
        "version": [
            {"type": {"text": "model version"}, "value": model.version},
            {"type": {"text": "sha256"}, "value": model.sha256},
        ],
        "note": [{"text": DISCLAIMER}],
    }


def _observation(
    finding: FindingResult,
    context: ReportContext,
    status: str,
    identifier: str,
    study: dict[str, Any],
    device_url: str | None,
    language: str,
) -> dict[str, Any]:
    concept = context.concepts.get(finding.code)
    code: dict[str, Any] = {"text": finding_name(finding.display, language)}
    if concept is not None:
        code["coding"] = [concept.model_dump()]
    flag = ("POS", "Positive") if finding.flagged else ("NEG", "Negative")
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "language": language,
        "identifier": [{"system": IDENTIFIER_SYSTEM, "value": identifier}],
        "status": status,
        "category": [{"coding": [IMAGING]}],
        "code": code,
        "valueQuantity": _probability(finding.probability),
        "interpretation": [
            {
                "coding": [{"system": _INTERPRETATION, "code": flag[0], "display": flag[1]}],
                "text": interpretation_text(finding.flagged, language),
            }
        ],
        "referenceRange": [
            {
                "high": _probability(finding.threshold),
                "text": operating_point_text(finding.threshold, language),
            }
        ],
        "derivedFrom": [study],
        "note": [{"text": observation_note(finding.sop_instance_uid, language)}],
    }
    if device_url is not None:
        observation["device"] = {"reference": device_url}
    return observation


def _probability(value: float) -> dict[str, Any]:
    return {"value": round(value, 6), "unit": "probability", "system": UCUM, "code": "1"}


def _conclusion_codes(
    result: StudyResult, concepts: dict[str, Concept], language: str
) -> list[dict[str, Any]]:
    """The flagged findings' codes; a study that was not analysed is coded as such, so that no
    system reading codes alone mistakes the absence of findings for a normal study. A coding's
    display is the code system's (English); the text is for people, in the report's language."""
    if result.status != "analyzed":
        display = "not analysed" if result.status == "not_analyzed" else "screening failed"
        coding = {"system": STATUS_SYSTEM, "code": result.status, "display": display}
        return [{"coding": [coding], "text": status_text(result.status, language)}]
    out = []
    for finding in result.flagged:
        concept = concepts.get(finding.code)
        entry: dict[str, Any] = {"text": finding_name(finding.display, language)}
        if concept is not None:
            entry["coding"] = [concept.model_dump()]
        out.append(entry)
    return out


def _full_url(system: str, value: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{system}|{value}')}"


def _entry(
    url: str, resource: dict[str, Any], system: str, value: str, final: bool
) -> dict[str, Any]:
    """A conditional create on the identifier; for a final report, a conditional update of the
    preliminary one (or a create, if the preliminary never arrived)."""
    query = urlencode({"identifier": f"{system}|{value}"})
    kind = resource["resourceType"]
    if final:
        request = {"method": "PUT", "url": f"{kind}?{query}"}
    else:
        request = {"method": "POST", "url": kind, "ifNoneExist": query}
    return {"fullUrl": url, "resource": resource, "request": request}
