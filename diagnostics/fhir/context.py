"""What a FHIR report needs beyond the StudyResult: who the patient is and what each finding
code means, captured when the result is recorded so that a later `final` report (or a GET)
says the same as the first one, whatever happened to the instance files or the model since."""

from __future__ import annotations

import re
from collections.abc import Mapping

from pydantic import BaseModel, Field
from pydicom.dataset import Dataset

from diagnostics.i18n import DEFAULT_LANGUAGE, Language
from diagnostics.package import CodedConcept, Manifest
from diagnostics.strict import STRICT

_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")

SYSTEMS: Mapping[str, str] = {
    "SCT": "http://snomed.info/sct",
    "LN": "http://loinc.org",
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    "RADLEX": "http://radlex.org",
    "RADLEX_": "http://radlex.org",
}
"""DICOM Coding Scheme Designators and their FHIR code system URIs (PS3.16 Table 8-1)."""


class Concept(BaseModel):
    """A coded concept as FHIR writes it: a system URI rather than a DICOM designator."""

    model_config = STRICT

    system: str = Field(min_length=1)
    code: str = Field(min_length=1)
    display: str = Field(min_length=1)

    @classmethod
    def from_dicom(cls, concept: CodedConcept) -> Concept:
        system = SYSTEMS.get(concept.scheme, f"urn:dicom:coding-scheme:{concept.scheme}")
        return cls(system=system, code=concept.value, display=concept.meaning)


class PatientIdentity(BaseModel):
    """The patient identifier from the study's header; the EMR resolves it to its Patient."""

    model_config = STRICT

    id: str = Field(min_length=1)
    issuer: str | None = None
    """Issuer of Patient ID as the header gives it."""

    def identifier(self) -> dict[str, object]:
        """A FHIR Identifier: the issuer becomes the system when it is an OID or a URI, and
        is otherwise kept as the assigner's name (the EMR's mapping decides)."""
        out: dict[str, object] = {"value": self.id}
        issuer = self.issuer
        if issuer and _OID.match(issuer):
            out["system"] = f"urn:oid:{issuer}"
        elif issuer and re.match(r"^(https?://|urn:)\S+$", issuer):
            out["system"] = issuer
        elif issuer:
            out["assigner"] = {"display": issuer}
        return out


class Reader(BaseModel):
    """The radiologist who marked the study read: the report becomes `final` with them."""

    model_config = STRICT

    actor: str = Field(min_length=1)
    read_at: str = Field(min_length=1)
    """FHIR instant (ISO 8601 with a time zone)."""


class ReportContext(BaseModel):
    """Everything a report copies from outside the StudyResult."""

    model_config = STRICT

    patient: PatientIdentity | None = None
    """None when no stored instance could be read (a failed study): the report still goes."""
    accession_number: str | None = None
    study_date: str | None = None
    """FHIR date of the study (Study Date): the report's effective time."""
    concepts: dict[str, Concept] = Field(default_factory=dict)
    """Finding code -> coded concept, from the model's catalogue."""
    language: Language = DEFAULT_LANGUAGE
    """The language the report is written in (the service's `--report-language` when the result
    was recorded): kept with the result's context, not in the StudyResult, because it belongs to
    this report, not to what the model found; kept at all so that the `final` report and a later
    GET say the same, in the same words, as the preliminary one the EMR already has."""

    @classmethod
    def from_header(
        cls,
        header: Dataset | None,
        manifest: Manifest | None,
        language: Language = DEFAULT_LANGUAGE,
    ) -> ReportContext:
        concepts = (
            {f.code: Concept.from_dicom(f.concept) for f in manifest.findings} if manifest else {}
        )
        if header is None:
            return cls(concepts=concepts, language=language)
        patient_id = str(header.get("PatientID", "") or "").strip()
        issuer = str(header.get("IssuerOfPatientID", "") or "").strip() or None
        accession = str(header.get("AccessionNumber", "") or "").strip() or None
        return cls(
            patient=PatientIdentity(id=patient_id, issuer=issuer) if patient_id else None,
            accession_number=accession,
            study_date=_fhir_date(str(header.get("StudyDate", "") or "")),
            concepts=concepts,
            language=language,
        )


def _fhir_date(date: str) -> str | None:
    """DICOM DA as a FHIR date. The time is left out: a FHIR dateTime with a time needs a time
    zone, and the header rarely gives one."""
    date = date.strip()
    if not re.fullmatch(r"\d{8}", date):
        return None
    return f"{date[:4]}-{date[4:6]}-{date[6:]}"
