"""Apply the confidentiality profile to one pydicom Dataset, nested sequences included.

The engine builds a new dataset element by element rather than editing the source in place:
an attribute is in the output only because a rule put it there, so a branch we forgot cannot
leave the original value behind, and the caller's dataset stays intact for its own checks.
The File Meta Information is rebuilt from scratch (PS3.15 E.1.1 step 7): the original may name
the sending station and repeats the original SOP Instance UID.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from pydicom.dataelem import DataElement, empty_value_for_VR
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

from diagnostics.deid.codes import (
    CODE_TAGS,
    DUMMY_TEXT,
    TEXT_VRS,
    clean_code_element,
    clean_text_element,
)
from diagnostics.deid.dates import shift_da, shift_dt
from diagnostics.deid.keys import Keys
from diagnostics.deid.profile import (
    PATIENT_ID,
    TYPE1_IN_IMAGES,
    Action,
    Profile,
    is_class_uid,
)

_DUMMY_BY_VR: dict[str, object] = {
    "DA": "19000101",
    "TM": "000000",
    "DT": "19000101000000",
    "AS": "000Y",
    "DS": "0",
    "IS": "0",
    "UR": "urn:anonymized",
    "AT": 0,
    "US": 0,
    "SS": 0,
    "UL": 0,
    "SL": 0,
    "UV": 0,
    "SV": 0,
    "FL": 0.0,
    "FD": 0.0,
}
_BINARY_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}

METHOD_BASIC = ("113100", "Basic Application Confidentiality Profile")
METHOD_MODIFIED_DATES = ("113107", "Retain Longitudinal Temporal Information Modified Dates Option")
"""De-identification Method codes from CID 7050 (coding scheme DCM)."""
IMPLEMENTATION_VERSION = "DIAGNOSTICS_DEID"


def patient_key(ds: Dataset) -> str:
    """What identifies the patient for pseudonyms and date offsets, in decreasing reliability.

    Patient ID with its issuer; failing that, name and birth date; failing both, the study,
    which keeps one study's dates consistent but cannot link studies of that patient.
    """
    patient_id = str(ds.get("PatientID", "") or "").strip()
    if patient_id:
        return f"id\x1f{str(ds.get('IssuerOfPatientID', '') or '').strip()}\x1f{patient_id}"
    name = str(ds.get("PatientName", "") or "").strip()
    if name:
        return f"name\x1f{name}\x1f{str(ds.get('PatientBirthDate', '') or '').strip()}"
    return f"study\x1f{str(ds.get('StudyInstanceUID', '') or '').strip()}"


@dataclass
class Deidentifier:
    """The profile, its options and the keys: one per export, so UIDs map consistently."""

    keys: Keys
    shift_dates: bool = False
    profile: Profile = field(default_factory=Profile.basic)

    @property
    def method_codes(self) -> tuple[tuple[str, str], ...]:
        return (METHOD_BASIC, METHOD_MODIFIED_DATES) if self.shift_dates else (METHOD_BASIC,)

    def deidentify(self, source: Dataset) -> Dataset:
        """A de-identified copy of `source` with new File Meta Information; `source` is intact."""
        key = patient_key(source)
        walk = _Walk(self, self.keys.pseudonym(key), self.keys.day_offset(key))
        out = walk.clean(source, top=True)
        self._mark(out)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = out.SOPClassUID
        meta.MediaStorageSOPInstanceUID = out.SOPInstanceUID
        meta.TransferSyntaxUID = _transfer_syntax(source)
        meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
        meta.ImplementationVersionName = IMPLEMENTATION_VERSION
        out.file_meta = meta
        out.preamble = b"\x00" * 128
        return out

    def _mark(self, out: Dataset) -> None:
        """Patient Identity Removed and the method used (PS3.15 E.1.1 step 6)."""
        out.PatientIdentityRemoved = "YES"
        out.DeidentificationMethod = [meaning for _, meaning in self.method_codes]
        items = []
        for value, meaning in self.method_codes:
            item = Dataset()
            item.CodeValue = value
            item.CodingSchemeDesignator = "DCM"
            item.CodeMeaning = meaning
            items.append(item)
        out.DeidentificationMethodCodeSequence = Sequence(items)
        out.LongitudinalTemporalInformationModified = "MODIFIED" if self.shift_dates else "REMOVED"


@dataclass
class _Walk:
    """One instance's pass: its patient's pseudonym and day offset travel into every item."""

    owner: Deidentifier
    pseudonym: str
    days: int

    def clean(self, ds: Dataset, *, top: bool = False) -> Dataset:
        out = Dataset()
        for elem in ds:  # iterating converts raw elements, so every value is decoded once
            is_sequence = elem.VR == "SQ"
            action = self.owner.profile.action_for(
                elem.tag, elem.VR, shift_dates=self.owner.shift_dates, is_sequence=is_sequence
            )
            new = self._apply(action, elem, top=top)
            if new is not None and not top and action == "K":
                new = self._clean_nested(ds, new)
            if new is not None:
                out.add(new)
        return out

    def _clean_nested(self, item: Dataset, elem: DataElement) -> DataElement | None:
        """Free text the table does not name, inside a kept sequence (`diagnostics.deid.codes`)."""
        if elem.tag in self.owner.profile.rows:
            return elem  # the table decided: K
        if elem.tag in CODE_TAGS:
            return clean_code_element(item, elem, self.owner.keys)
        if elem.VR in TEXT_VRS:
            return clean_text_element(elem)
        return elem

    def _apply(self, action: Action, elem: DataElement, *, top: bool) -> DataElement | None:
        tag, vr = elem.tag, elem.VR
        if action == "X":
            return None
        if action == "K":
            return elem
        if action == "RECURSE":
            items = elem.value or []
            return DataElement(tag, "SQ", Sequence([self.clean(item) for item in items]))
        if action == "Z":
            return _empty(tag, vr)
        if action == "D":
            return self._dummy(elem)
        if action == "U":
            return self._uids(elem, keep_classes=False)
        if action == "UID_BY_VR":
            return self._uids(elem, keep_classes=True)
        if action == "PSEUDONYM":
            return self._pseudonym(elem, top=top)
        if action == "SHIFT":
            return self._shifted(elem)
        raise AssertionError(f"unhandled action {action!r}")  # Action is a closed set

    def _dummy(self, elem: DataElement) -> DataElement:
        tag, vr = elem.tag, elem.VR
        if vr == "SQ":
            # One empty item: present and non-empty as D asks, carrying nothing at all. The
            # sequences the table marks D (Content, Graphic Annotation, Verifying Observer)
            # belong to SR and presentation-state IODs, which the store never holds.
            return DataElement(tag, "SQ", Sequence([Dataset()]))
        if vr == "UI":
            return DataElement(tag, vr, self.owner.keys.uid(f"dummy:{tag}"))
        base = vr.split(" or ")[0]
        if base in _BINARY_VRS:
            return DataElement(tag, base, b"\x00" * 8)
        return DataElement(tag, base, _DUMMY_BY_VR.get(base, DUMMY_TEXT))

    def _uids(self, elem: DataElement, *, keep_classes: bool) -> DataElement:
        values = _values(elem.value)
        keyword = elem.keyword
        mapped = [
            value
            if not value or (keep_classes and is_class_uid(keyword, value))
            else self.owner.keys.uid(value)
            for value in values
        ]
        return DataElement(elem.tag, "UI", _joined(mapped))

    def _pseudonym(self, elem: DataElement, *, top: bool) -> DataElement:
        if top:
            # The name as family^given ("ANON", the digits): a one-component name without a
            # caret reads as the retired PN form to validators.
            value = self.pseudonym if elem.tag == PATIENT_ID else "ANON^" + self.pseudonym[4:]
            return DataElement(elem.tag, elem.VR, value)
        # Nested patient identity (another patient, or a copy): its own pseudonym, no name.
        value = str(elem.value or "").strip()
        if elem.tag == PATIENT_ID and value:
            return DataElement(elem.tag, elem.VR, self.owner.keys.pseudonym(f"id\x1f\x1f{value}"))
        return _empty(elem.tag, elem.VR)

    def _shifted(self, elem: DataElement) -> DataElement:
        shift = shift_da if elem.VR == "DA" else shift_dt
        moved = [shift(str(value), self.days) for value in _values(elem.value) if str(value)]
        if all(value is not None for value in moved):
            return DataElement(elem.tag, elem.VR, _joined([v for v in moved if v is not None]))
        # Not a date we can shift: handle it as if the option were off, never keep it.
        return self._dummy(elem) if elem.tag in TYPE1_IN_IMAGES else _empty(elem.tag, elem.VR)


def _transfer_syntax(source: Dataset) -> UID:
    """The source's syntax; for a bare dataset (no File Meta), the encoding it was read in."""
    meta = getattr(source, "file_meta", None)
    syntax = meta.get("TransferSyntaxUID") if meta is not None else None
    if syntax:
        return UID(str(syntax))
    implicit, little = source.original_encoding
    if implicit:
        return ImplicitVRLittleEndian
    return ExplicitVRBigEndian if little is False else ExplicitVRLittleEndian


def _empty(tag: BaseTag, vr: str) -> DataElement:
    base = vr.split(" or ")[0]
    if base == "SQ":
        return DataElement(tag, "SQ", Sequence([]))
    return DataElement(tag, base, empty_value_for_VR(base))


def _values(value: object) -> list[str]:
    if value is None:
        return []
    if isinstance(value, MultiValue | list | tuple):
        return [str(v) for v in value]
    return [str(value)]


def _joined(values: Iterable[str]) -> object:
    listed = list(values)
    if not listed:
        return None
    return listed[0] if len(listed) == 1 else listed
