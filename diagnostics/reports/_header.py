"""Source headers made safe to copy into new instances.

The reader is lenient: it accepts images whose patient and study attributes are empty, missing or
not valid DICOM (a birth date written `1901-01-01`, a time of `256199`, an accession number
longer than 16 characters). highdicom copies those attributes into every output and refuses,
or writes an invalid file, when one of them is bad. So the outputs copy a cleaned header: every
value is decoded with the source's own character set, a value that is not valid for its VR is
left out (type 2 attributes stay present, empty), and the text is re-encoded as UTF-8, which
holds any name the source could spell (Cyrillic, Uzbek Latin, ISO 2022 escapes).
"""

from __future__ import annotations

import copy
import re
from datetime import date

from pydicom import config
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import validate_value

UTF8 = "ISO_IR 192"

# Patient and study attributes every output copies. They are type 2 (present, possibly empty)
# in every image IOD, but a lenient reader accepts headers that omit them.
TYPE2_COPIED = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "AccessionNumber",
    "StudyID",
    "StudyDate",
    "StudyTime",
    "ReferringPhysicianName",
)
_SEXES = ("M", "F", "O")
_DATE = re.compile(r"^(\d{4})(\d{2})(\d{2})$")
_TIME = re.compile(r"^(\d{2})(?:(\d{2})(?:(\d{2})(?:\.\d{1,6})?)?)?$")
_DATETIME = re.compile(r"^(\d{8})(\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,6})?)?)?)?([+-]\d{4})?$")
_CHECKED_VRS = frozenset(
    {"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST", "TM", "UC", "UI"}
)
# Attributes that never belong in a copy: the pixels and what only the file carries.
_DROPPED = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _real_date(text: str) -> bool:
    match = _DATE.match(text)
    if match is None:
        return False
    try:
        date(*(int(part) for part in match.groups()))
    except ValueError:
        return False
    return True


def _real_time(text: str) -> bool:
    match = _TIME.match(text)
    if match is None:
        return False
    hour, minute, second = (int(part) if part else 0 for part in match.groups())
    return hour < 24 and minute < 60 and second < 61  # 60: a leap second


def _real_datetime(text: str) -> bool:
    match = _DATETIME.match(text)
    if match is None:
        return False
    day, time, _ = match.groups()
    return _real_date(day) and (not time or _real_time(time))


def _text_of(value: object) -> str:
    original = getattr(value, "original_string", None)
    return str(original) if isinstance(original, str) else str(value)


def valid_value(vr: str, value: object) -> bool:
    """Whether every value of an element is valid DICOM for its VR (an empty one is)."""
    values = list(value) if isinstance(value, MultiValue | list | tuple) else [value]
    for item in values:
        if item is None or item == "":
            continue
        text = _text_of(item)
        try:
            validate_value(vr, text, config.RAISE)
        except (ValueError, TypeError):
            return False
        if vr == "DA" and not _real_date(text):
            return False
        if vr == "TM" and not _real_time(text.strip()):
            return False
        if vr == "DT" and not _real_datetime(text.strip()):
            return False
    return True


def _valid_element(element: DataElement) -> bool:
    if element.VR == "SQ":
        return all(_clean(item) for item in element.value)
    if element.VR not in _CHECKED_VRS:
        return True
    return valid_value(element.VR, element.value)


def _clean(dataset: Dataset) -> bool:
    """Drop the invalid elements of a dataset in place; False when it was left empty."""
    for tag in list(dataset.keys()):
        try:
            valid = _valid_element(dataset[tag])
        except (ValueError, TypeError, KeyError, AttributeError):  # a value pydicom cannot parse
            valid = False
        if not valid:
            del dataset[tag]
    return len(dataset) > 0


def clean_header(source: Dataset) -> Dataset:
    """A copy of `source` with only valid values, decoded and declared as UTF-8.

    A sequence item that loses all its elements drops the whole sequence: a half-empty code or
    reference would be worse than none. Type 2 patient and study attributes are always present,
    empty when the source had no valid value. Patient Sex keeps only its defined terms.
    """
    header = copy.deepcopy(source)
    header.remove_private_tags()
    for keyword in _DROPPED:
        if keyword in header:
            delattr(header, keyword)
    header.decode()  # every text value to str with the source's character set, nested too
    _clean(header)
    if str(header.get("PatientSex", "") or "") not in _SEXES:
        header.PatientSex = ""
    for keyword in TYPE2_COPIED:
        if keyword not in header:
            setattr(header, keyword, "")
    header.SpecificCharacterSet = UTF8
    return header


def patient_orientation(header: Dataset) -> list[str] | None:
    """The source's Patient Orientation when it is the two direction strings DICOM defines."""
    value = header.get("PatientOrientation")
    values = [str(v) for v in value] if isinstance(value, MultiValue | list) else []
    if len(values) != 2 or not all(re.fullmatch(r"[AFHLPR]{1,3}", v) for v in values):
        return None
    return values
