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
