"""The profile table and how its compound actions resolve without the IOD tables."""

from __future__ import annotations

import re

import pytest
from pydicom.datadict import dictionary_description
from pydicom.tag import Tag

from diagnostics.deid.profile import PATTERN_ROWS, Profile, ProfileRow, is_class_uid
from diagnostics.deid.table import BASIC_PROFILE_TABLE

PROFILE = Profile.basic()


def _action(tag: int, vr: str, *, shift: bool = False) -> str:
    return PROFILE.action_for(Tag(tag), vr, shift_dates=shift, is_sequence=vr == "SQ")


def test_every_row_names_the_attribute_pydicom_knows_by_that_tag() -> None:
    # A typo in a transcribed tag would point the action at another attribute; the names in
    # the standard's table and in pydicom's dictionary come from different sources.
    def norm(text: str) -> str:
        return re.sub(r"[^a-z0-9]", "", text.lower())

    mismatched = [
        (hex(tag), name)
        for tag, _, _, name in BASIC_PROFILE_TABLE
        if norm(dictionary_description(tag)) != norm(name)
    ]
    assert mismatched == []


def test_the_table_has_every_row_once() -> None:
    assert len({tag for tag, *_ in BASIC_PROFILE_TABLE}) == len(BASIC_PROFILE_TABLE) == 456
    assert PROFILE.standard_rows == 456 + len(PATTERN_ROWS) == 460
    assert PROFILE.extra_rows == 8


def test_a_row_with_an_unknown_action_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown action"):
        ProfileRow(Tag(0x00100010), "Q", False, "Patient's Name")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("tag", "vr", "expected"),
    [
        (0x00100010, "PN", "PSEUDONYM"),  # Patient's Name: Z, written as the pseudonym
        (0x00100020, "LO", "PSEUDONYM"),  # Patient ID
        (0x00080050, "SH", "Z"),  # Accession Number
        (0x00080080, "LO", "Z"),  # Institution Name X/Z/D: Type 3, so no dummy needed
        (0x00080023, "DA", "D"),  # Content Date Z/D: Type 1 in enhanced images
        (0x00181030, "LO", "X"),  # Protocol Name X/D
        (0x00080021, "DA", "D"),  # Series Date X/D: Type 1 in PET
        (0x00081140, "SQ", "RECURSE"),  # Referenced Image Sequence X/Z/U*: keep, map UIDs
        (0x00081110, "SQ", "X"),  # Referenced Study Sequence X/Z: an empty one is invalid
        (0x00400555, "SQ", "Z"),  # Acquisition Context Sequence X/Z: Type 2 in images
        (0x00400275, "SQ", "X"),  # Request Attributes Sequence
        (0x0040A730, "SQ", "D"),  # Content Sequence
        (0x00080018, "UI", "U"),  # SOP Instance UID
        (0x00120081, "LO", "X"),  # override: its Type 1C condition is removed by the table
        (0x00090010, "LO", "X"),  # private creator
        (0x00091001, "LO", "X"),  # private element
        (0x60003000, "OW", "X"),  # overlay data
        (0x60000010, "US", "X"),  # the rest of the overlay group goes too
        (0x50000005, "US", "X"),  # curve
        (0x00080000, "UL", "X"),  # group length
        (0x00080012, "DA", "Z"),  # Instance Creation Date: not in the table, a date by VR
        (0x00189074, "DT", "D"),  # Frame Acquisition DateTime: Type 1C, by VR
        (0x0040A0B0, "PN", "Z"),  # a person name the table does not list
        (0x00081150, "UI", "UID_BY_VR"),  # Referenced SOP Class UID: decided per value
        (0x00080070, "LO", "K"),  # Manufacturer
        (0x00081234, "UN", "X"),  # an even-group attribute nobody could decode
        (0x00082218, "SQ", "RECURSE"),  # Anatomic Region Sequence: kept, items cleaned
    ],
)
def test_actions_without_options(tag: int, vr: str, expected: str) -> None:
    assert _action(tag, vr) == expected


@pytest.mark.parametrize(
    ("tag", "vr", "expected"),
    [
        (0x00080020, "DA", "SHIFT"),  # Study Date: C in the Modified Dates Option
        (0x00080030, "TM", "K"),  # Study Time: whole-day shifts leave it as it was
        (0x00100030, "DA", "Z"),  # Patient's Birth Date: not covered by the option
        (0x00080012, "DA", "SHIFT"),  # a date by VR
        (0x0008002A, "DT", "SHIFT"),
        (0x00080201, "SH", "X"),  # Timezone Offset From UTC: C, but not a date: removed
    ],
)
def test_actions_with_shifted_dates(tag: int, vr: str, expected: str) -> None:
    assert _action(tag, vr, shift=True) == expected


def test_class_uids_are_told_from_instance_uids() -> None:
    assert is_class_uid("ReferencedSOPClassUID", "1.2.3.4.5")  # by keyword
    assert is_class_uid("SomethingUID", "1.2.840.10008.5.1.4.1.1.1.1")  # a registered UID
    assert not is_class_uid("SomethingUID", "1.2.826.0.1.3680043.8.498.1234")
