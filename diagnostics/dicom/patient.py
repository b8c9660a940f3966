"""Whose study it is: the header facts a radiologist triages by, decoded to plain text.

Read once when an instance is received (the store keeps them for the worklist), never per page
view. Text is decoded in the instance's Specific Character Set (pydicom does this: ISO_IR 192
UTF-8, ISO_IR 144 Cyrillic, ISO 2022 escapes), so a name reads the same in every character set.
These values are patient data: they go to the store and the signed-in review pages only, never
to a log, a metric or an error message.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.valuerep import PersonName

from diagnostics.dicom.warn import recorded_warnings

MAX_TEXT = 256
"""Longer values are cut: LO is 64 characters, PN groups 64 each; anything longer is damage."""


@dataclass(frozen=True)
class StudyHeader:
    """One instance's patient and study facts; None where the header has no (or an empty)
    value, as DICOM Type 2 attributes often are."""

    patient_name: str | None = None
    """As DICOM writes it (`Family^Given^Middle^Prefix^Suffix`), alphabetic group only."""
    patient_id: str | None = None
    birth_date: str | None = None
    """DA (YYYYMMDD)."""
    sex: str | None = None
    age: str | None = None
    """AS (`045Y`)."""
    accession_number: str | None = None
    study_date: str | None = None
    """DA (YYYYMMDD), the modality's local date."""
    study_time: str | None = None
    """TM (HHMMSS.FFFFFF), the modality's local time."""
    description: str | None = None
    institution: str | None = None
    modality: str | None = None
    view: str | None = None
    """View Position (PA, AP, LL...)."""


FIELDS = {
    "patient_id": "PatientID",
    "birth_date": "PatientBirthDate",
    "sex": "PatientSex",
    "age": "PatientAge",
    "accession_number": "AccessionNumber",
    "study_date": "StudyDate",
    "study_time": "StudyTime",
    "description": "StudyDescription",
    "institution": "InstitutionName",
    "modality": "Modality",
    "view": "ViewPosition",
}
"""StudyHeader fields (other than the name) and the attributes they come from."""


def study_header(ds: Dataset) -> StudyHeader:
    """The facts of one header; an attribute that cannot be decoded is left out (None), never
    an error: intake has already accepted the instance.

    pydicom's warnings about a value it repaired duplicate its log lines, so they are dropped;
    recording them under `recorded_warnings` also keeps them out of a concurrent read's record.
    """
    with recorded_warnings():
        values = {name: _text(ds, keyword) for name, keyword in FIELDS.items()}
        return StudyHeader(patient_name=_name(ds), **values)


def _text(ds: Dataset, keyword: str) -> str | None:
    try:
        value = ds.get(keyword)  # a value in a wrong charset: pydicom replaces it
        text = "\\".join(map(str, value)) if _multi(value) else str(value or "")
    except (ValueError, LookupError, TypeError, UnicodeError):
        return None
    text = re.sub(r"[\x00-\x1f\x7f]", " ", text).strip()
    return text[:MAX_TEXT] or None


def _multi(value: object) -> bool:
    return isinstance(value, list | tuple) or type(value).__name__ == "MultiValue"


def _name(ds: Dataset) -> str | None:
    """The alphabetic group of Patient's Name; the ideographic one when that is all there is."""
    try:
        value = ds.get("PatientName")
        if value is None:
            return None
        name = value if isinstance(value, PersonName) else PersonName(str(value))
        text = name.alphabetic or name.ideographic or name.phonetic
    except (ValueError, LookupError, TypeError, UnicodeError):
        return None
    text = re.sub(r"[\x00-\x1f\x7f]", " ", text).strip(" ^")
    return text[:MAX_TEXT] or None


def display_name(name: str | None) -> str | None:
    """`Family^Given^Middle^Prefix^Suffix` as a person reads it: `Family, Given Middle`."""
    if not name:
        return None
    parts = [p.strip() for p in name.split("^")]
    parts += [""] * (5 - len(parts))
    family, given, middle, prefix, suffix = parts[:5]
    rest = " ".join(p for p in (prefix, given, middle, suffix) if p)
    if family and rest:
        return f"{family}, {rest}"
    return family or rest or None
