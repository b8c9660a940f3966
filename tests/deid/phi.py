"""Plant recognisable identifying values in every place the confidentiality profile covers.

Each row of the profile table gets a value nobody else would write: text `PHI<row>`, the date
19310517, the time 031415, UIDs under a root of their own, and numbers that are checked by
value. A leak is then a byte pattern in the output (`leaks`) or a planted value still sitting
under its tag (`survivors`), found without knowing which rule should have handled it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from pydicom.datadict import dictionary_VR
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import BaseTag, Tag

from diagnostics.deid.profile import Profile

UID_ROOT = "1.2.826.0.1.3680043.10.1042"
MARK_DATE = "19310517"
MARK_TIME = "031415"
DX_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"
TEXT_MARKER = re.compile(rb"PHI\d{4}")
NUMBERS = {"DS": "2718.28", "IS": "31337", "AS": "093Y", "AT": 0x00100010}
BINARY_NUMBER = 31337

ROWS = sorted(Profile.basic().rows.values(), key=lambda r: int(r.tag))
"""Every fixed-tag row: Table E.1-1 and our additions (patterns are planted separately)."""
UNWRITABLE_GROUPS = {0x0000, 0x0002}
"""Command elements cannot be written into a Part 10 file; File Meta lives in `file_meta`."""


def text(index: int) -> str:
    return f"PHI{index:04d}"


def uid(variant: int, index: int) -> str:
    return f"{UID_ROOT}.{variant}.{index}"


def _item(index: int, variant: int, *, references: bool) -> Dataset:
    item = Dataset()
    if references:
        item.ReferencedSOPClassUID = DX_CLASS
        item.ReferencedSOPInstanceUID = uid(variant, index)
    else:
        item.CodeValue = text(index)
        item.CodingSchemeDesignator = "99PHI"
        item.CodeMeaning = text(index)
    return item


def value_for(index: int, tag: BaseTag, basic: str, variant: int) -> tuple[str, object]:
    """The VR and planted value for one row."""
    vr = dictionary_VR(tag).split(" or ")[0]
    if vr == "SQ":
        return vr, Sequence([_item(index, variant, references=basic == "X/Z/U*")])
    if vr == "UI":
        return vr, uid(variant, index)
    if vr == "DA":
        return vr, MARK_DATE
    if vr == "TM":
        return vr, MARK_TIME
    if vr == "DT":
        return vr, MARK_DATE + MARK_TIME
    if vr in NUMBERS:
        return vr, NUMBERS[vr]
    if vr in ("US", "SS", "UL", "SL", "UV", "SV"):
        return vr, BINARY_NUMBER
    if vr in ("FL", "FD"):
        return vr, float(BINARY_NUMBER)
    if vr in ("OB", "OW", "OD", "OF", "OL", "OV", "UN"):
        return vr, text(index).encode() + b"\x00"
    if vr == "UR":
        return vr, f"urn:{text(index)}"
    return vr, text(index)


def plant(ds: Dataset, *, variant: int = 1, writable: bool = True) -> dict[BaseTag, object]:
    """Add every row's planted value to `ds`; returns what was planted by tag."""
    planted: dict[BaseTag, object] = {}
    for index, row in enumerate(ROWS):
        if writable and row.tag.group in UNWRITABLE_GROUPS:
            continue
        vr, value = value_for(index, row.tag, row.basic, variant)
        ds.add(DataElement(row.tag, vr, value))
        planted[row.tag] = value
    # The pattern rows: curves and overlays (whole groups) and private attributes, both with
    # and without their private creator.
    ds.add_new(0x50000005, "US", 2)  # Curve Dimensions
    ds.add_new(0x50003000, "OB", b"PHI9501\x00")  # Curve Data
    ds.add_new(0x60000010, "US", 4)  # Overlay Rows
    ds.add_new(0x60000011, "US", 4)  # Overlay Columns
    ds.add_new(0x60000040, "CS", "G")  # Overlay Type
    ds.add_new(0x60000050, "SS", [1, 1])  # Overlay Origin
    ds.add_new(0x60000100, "US", 1)  # Overlay Bits Allocated
    ds.add_new(0x60000102, "US", 0)  # Overlay Bit Position
    ds.add_new(0x60001500, "LO", "PHI9502")  # Overlay Label
    ds.add_new(0x60003000, "OB", b"\xff\xff")  # Overlay Data
    ds.add_new(0x60004000, "LT", "PHI9503")  # Overlay Comments
    block = ds.private_block(0x0009, "PHI9504 CREATOR", create=True)
    block.add_new(0x01, "LO", "PHI9505")
    ds.add_new(0x00131010, "LO", "PHI9506")  # private, no creator
    return planted


def walk(ds: Dataset) -> Iterator[DataElement]:
    """Every element at every depth, file meta included."""
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        yield from meta
    stack = [ds]
    while stack:
        current = stack.pop()
        for elem in current:
            yield elem
            if elem.VR == "SQ":
                stack.extend(elem.value)


def leaks(blob: bytes) -> list[bytes]:
    """Planted values found in raw bytes: text markers, the planted date and the UID root."""
    found = [m.group(0) for m in TEXT_MARKER.finditer(blob)]
    for needle in (MARK_DATE.encode(), UID_ROOT.encode()):
        if needle in blob:
            found.append(needle)
    return found


def survivors(ds: Dataset, *, times: bool) -> list[str]:
    """Planted values still under a planted tag, at any depth (file meta included).

    `times`: also report the planted time, which the Modified Dates Option rightly keeps.
    """
    planted = {row.tag for row in ROWS}
    found = []
    for elem in walk(ds):
        if elem.tag not in planted or elem.VR == "SQ" or (elem.VR == "TM" and not times):
            continue
        _, expected = value_for(0, elem.tag, "", 0)
        value = elem.value
        if elem.VR in ("UI", "OB", "OW", "UN") or (isinstance(expected, str) and "PHI" in expected):
            continue  # text, UIDs and bytes carry their row in the value: `leaks` finds them
        if value in (None, "", b"") or (value != expected and str(value) != str(expected)):
            continue
        found.append(f"{elem.tag} {elem.keyword}={value!r}")
    return found


def private_tags(ds: Dataset) -> list[BaseTag]:
    return [elem.tag for elem in walk(ds) if Tag(elem.tag).is_private]


RESIDUE_PREFIX = "QXR"
FREE_TEXT_DATE = "1931-05-17"


class Residue:
    """Distinct markers planted one per place; `markers` lists them all for the byte search."""

    def __init__(self) -> None:
        self.markers: list[str] = []

    def __call__(self, suffix: str = "") -> str:
        marker = f"{RESIDUE_PREFIX}{len(self.markers):03d}"
        self.markers.append(marker)
        return marker + suffix

    def found_in(self, blob: bytes) -> list[str]:
        return [m for m in self.markers if m.encode() in blob]


def _code(mark: Residue, scheme: str = "SCT", value: str = "51185008") -> Dataset:
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = mark(" Dr Who's chest")
    return item


def plant_residue(ds: Dataset, mark: Residue) -> None:
    """Identifying text in every kind of place a radiograph can hold it, kept sequences too."""
    for keyword in (
        # patient
        "PatientName",
        "PatientID",
        "IssuerOfPatientID",
        "OtherPatientNames",
        "PatientAddress",
        "PatientMotherBirthName",
        "PatientTelephoneNumbers",
        "Occupation",
        "PatientComments",
        "AdditionalPatientHistory",
        "MedicalRecordLocator",
        "PatientBirthName",
        # physicians and operators
        "ReferringPhysicianName",
        "ReferringPhysicianAddress",
        "PerformingPhysicianName",
        "NameOfPhysiciansReadingStudy",
        "OperatorsName",
        "PhysiciansOfRecord",
        "RequestingPhysician",
        # institution and equipment
        "InstitutionName",
        "InstitutionAddress",
        "InstitutionalDepartmentName",
        "StationName",
        "DeviceSerialNumber",
        # descriptions
        "StudyDescription",
        "SeriesDescription",
        "ProtocolName",
        "PerformedProcedureStepDescription",
        "RequestedProcedureDescription",
        "AdmittingDiagnosesDescription",
        # comments and identifiers
        "ImageComments",
        "StudyComments",
        "RequestedProcedureComments",
        "AccessionNumber",
        "StudyID",
        "PerformedProcedureStepID",
    ):
        setattr(ds, keyword, mark())
    request = Dataset()
    request.RequestedProcedureID = mark()
    request.ScheduledProcedureStepDescription = mark()
    request.RequestedProcedureDescription = mark()
    request.RequestedProcedureCodeSequence = Sequence([_code(mark)])
    ds.RequestAttributesSequence = Sequence([request])
    ds.ProcedureCodeSequence = Sequence([_code(mark)])
    ds.ReferencedStudySequence = Sequence([Dataset()])
    ds.ReferencedStudySequence[0].ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.1"
    ds.ReferencedStudySequence[0].ReferencedSOPInstanceUID = f"{UID_ROOT}.9.1"
    other = Dataset()
    other.PatientID = mark()
    other.IssuerOfPatientID = mark()
    other.TypeOfPatientID = "TEXT"
    ds.OtherPatientIDsSequence = Sequence([other])
    content = Dataset()
    content.ValueType = "TEXT"
    content.ConceptNameCodeSequence = Sequence([_code(mark, "DCM", "121106")])
    content.TextValue = mark(" Mrs Smith")
    ds.ContentSequence = Sequence([content])
    # Kept sequences the table does not list: walked, their free text cleaned.
    region = _code(mark)  # a public code with a meaning typed by hand
    region.AnatomicRegionModifierSequence = Sequence([_code(mark, "99LOCAL", mark()[:16])])
    ds.AnatomicRegionSequence = Sequence([region])
    view = _code(mark, mark("99")[:16], "PA")  # a scheme designator that is a name
    view.CodingSchemeVersion = mark()
    view.ViewModifierCodeSequence = Sequence([_code(mark, "DCM", "R-10226")])
    ds.ViewCodeSequence = Sequence([view])
    structure = Dataset()
    structure.CodeValue = "39607008"
    structure.CodingSchemeDesignator = "SCT"
    structure.CodeMeaning = mark(f" seen {FREE_TEXT_DATE}")  # a date in free text
    structure.add_new(0x0040A160, "UT", mark())  # Text Value
    ds.PrimaryAnatomicStructureSequence = Sequence([structure])
    ds.AnatomicRegionSequence[0].add_new(0x00081030, "LO", mark())  # Study Description
    # private tags, at the top and inside a kept item
    block = ds.private_block(0x0029, mark(" CREATOR"), create=True)
    block.add_new(0x10, "LO", mark())
    block.add_new(0x11, "OB", mark().encode() + b"\x00")
    ds.add_new(0x00331010, "LO", mark())
    ds.ViewCodeSequence[0].private_block(0x0031, "ACME", create=True).add_new(0x01, "LO", mark())
    # overlays and curves
    ds.add_new(0x60000010, "US", 4)
    ds.add_new(0x60000011, "US", 4)
    ds.add_new(0x60000040, "CS", "G")
    ds.add_new(0x60000050, "SS", [1, 1])
    ds.add_new(0x60000100, "US", 1)
    ds.add_new(0x60000102, "US", 0)
    ds.add_new(0x60000022, "LO", mark())  # Overlay Description
    ds.add_new(0x60001500, "LO", mark())  # Overlay Label
    ds.add_new(0x60003000, "OB", mark().encode() + b"\x00")  # Overlay Data
    ds.add_new(0x60004000, "LT", mark())  # Overlay Comments
    ds.add_new(0x50000022, "LO", mark())  # Curve Description
    ds.add_new(0x50003000, "OB", mark().encode() + b"\x00")  # Curve Data
    # file meta
    ds.file_meta.SourceApplicationEntityTitle = mark()
    ds.file_meta.PrivateInformationCreatorUID = f"{UID_ROOT}.9.2"
    ds.file_meta.PrivateInformation = mark().encode() + b"\x00"
