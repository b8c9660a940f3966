"""The Basic Application Level Confidentiality Profile: which action applies to which attribute.

PS3.15 Annex E names an action per attribute: D (dummy value), Z (zero length), X (remove),
K (keep, cleaning sequences), U (consistent replacement UID), C (clean), and compound actions
that depend on whether the attribute is Type 1, 2 or 3 in the object's IOD. We do not carry the
IOD tables, so compound actions resolve to the weakest action that can never break conformance
of the image objects we export: Z where the alternative is X (an empty Type 3 attribute is still
valid) except for sequences (an empty Type 3 sequence is not: removed unless it is Type 2,
`TYPE2_SEQUENCES_IN_IMAGES`), and D only for the attributes known to be Type 1 in some image
IOD (`TYPE1_IN_IMAGES`). Dummy values carry no information, so erring towards D never leaks
anything. `OVERRIDES` lists the rows that, applied literally, would contradict another row.
dciodvfy on exported radiographs is the check that these choices hold.

Beyond the table (Note 1 and Note 4 of Section E.1 make the de-identifier responsible for
them): every private attribute, whole curve (50xx) and overlay (60xx) groups, group lengths,
dates and times found by their VR, person names by their VR, and instance UIDs by their VR.
Free text the table does not name inside a kept sequence (a Code Meaning typed at the
modality, a local code, a Text Value) is cleaned too, by `diagnostics.deid.codes`: the
table's own actions are unchanged, only what it left as K by default below the top level.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, cast

from pydicom.datadict import dictionary_has_tag
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID

from diagnostics.deid.table import BASIC_PROFILE_TABLE, EXTRA_ROWS

TableAction = Literal["D", "Z", "X", "K", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"]
Action = Literal["D", "Z", "X", "K", "U", "UID_BY_VR", "SHIFT", "PSEUDONYM", "RECURSE"]
"""What the engine does. RECURSE keeps a sequence and cleans each item; UID_BY_VR replaces an
instance UID but keeps a class UID (`is_class_uid`); SHIFT moves a date by the patient's offset
(Modified Dates Option); PSEUDONYM writes the patient's keyed pseudonym (a Z the profile allows
to be non-empty)."""

_TABLE_ACTIONS = {"D", "Z", "X", "K", "U", "Z/D", "X/Z", "X/D", "X/Z/D", "X/Z/U*"}
_DATE_VRS = {"DA", "DT"}
_TIME_VRS = {"TM"}
PATTERN_ROWS = (
    "Curve Data (50xx,xxxx): X",
    "Overlay Data (60xx,3000): X",
    "Overlay Comments (60xx,4000): X",
    "Private attributes (odd groups): X",
)
"""The four rows of Table E.1-1 whose tag is a pattern; `action_for` applies them as rules."""

PATIENT_ID = Tag(0x0010, 0x0020)
PATIENT_NAME = Tag(0x0010, 0x0010)

TYPE1_IN_IMAGES: frozenset[BaseTag] = frozenset(
    Tag(t)
    for t in (
        0x00080023,  # Content Date: Type 1 in the Multi-frame Functional Groups Module
        0x00080033,  # Content Time: likewise
        0x0008002A,  # Acquisition DateTime: Type 1C in enhanced CT/MR/XA images
        0x00080021,  # Series Date: Type 1 in the PET Series Module
        0x00080031,  # Series Time: likewise
        0x00189516,  # Start Acquisition DateTime: Type 1C in X-Ray 3D acquisitions
        0x00189517,  # End Acquisition DateTime: likewise
        0x00181000,  # Device Serial Number: Type 1 in the Enhanced General Equipment Module
        0x00189074,  # Frame Acquisition DateTime: Type 1C in frame functional groups
        0x00189151,  # Frame Reference DateTime: likewise
        0x00700082,  # Presentation Creation Date: Type 1 in presentation states
        0x00700083,  # Presentation Creation Time: likewise
    )
)
"""Attributes whose compound action (X/D, Z/D, X/Z/D) or by-VR handling must keep a value."""

TYPE2_SEQUENCES_IN_IMAGES: frozenset[BaseTag] = frozenset(
    {Tag(0x00400555)}  # Acquisition Context Sequence: Type 2 in the Acquisition Context Module
)
"""Sequences with an X/Z-style action that image IODs require present (possibly empty)."""

OVERRIDES: dict[BaseTag, tuple[TableAction, str]] = {
    Tag(0x00120081): (
        "X",
        "Clinical Trial Protocol Ethics Committee Name is D because it is Type 1C, required when "
        "the Approval Number (0012,0082) is present; the table removes that number, so the "
        "condition never holds and the name may not be present",
    ),
}
"""Rows whose table action, applied literally, would make the object inconsistent."""

_CLASS_UID_KEYWORDS = frozenset(
    {
        "SOPClassUID",
        "ReferencedSOPClassUID",
        "MediaStorageSOPClassUID",
        "AffectedSOPClassUID",
        "RequestedSOPClassUID",
        "ReferencedSOPClassUIDInFile",
        "RelatedGeneralSOPClassUID",
        "OriginalSpecializedSOPClassUID",
        "SOPClassesInStudy",
        "TransferSyntaxUID",
        "ReferencedTransferSyntaxUIDInFile",
        "ImplementationClassUID",
        "CodingSchemeUID",
        "ContextGroupExtensionCreatorUID",
        "MappingResourceUID",
        "PrivateInformationCreatorUID",
        "RelatedSOPClassUID",
    }
)
"""UI attributes that name a class, syntax or scheme rather than an instance: kept (K)."""


@dataclass(frozen=True)
class ProfileRow:
    """One row of Table E.1-1 (or of our additions): checked when built."""

    tag: BaseTag
    basic: TableAction
    modified_dates: bool
    """True where the Modified Dates Option says C (clean: shift the date)."""
    name: str
    from_standard: bool = True

    def __post_init__(self) -> None:
        if self.basic not in _TABLE_ACTIONS:
            raise ValueError(f"{self.name}: unknown action {self.basic!r}")
        if not dictionary_has_tag(self.tag):
            raise ValueError(f"{self.name}: {self.tag} is not in pydicom's data dictionary")


def _rows(
    table: tuple[tuple[int, str, str, str], ...], from_standard: bool
) -> tuple[ProfileRow, ...]:
    rows = []
    for tag, basic, option, name in table:
        if basic not in _TABLE_ACTIONS:
            raise ValueError(f"{name}: unknown action {basic!r}")
        if option not in ("", "C"):
            raise ValueError(f"{name}: unknown Modified Dates Option action {option!r}")
        action = cast(TableAction, basic)
        rows.append(ProfileRow(Tag(tag), action, option == "C", name, from_standard))
    return tuple(rows)


@dataclass(frozen=True)
class Profile:
    """The table indexed by tag, with the rules for patterns and VRs."""

    rows: dict[BaseTag, ProfileRow]

    @classmethod
    def basic(cls) -> Profile:
        rows = _rows(BASIC_PROFILE_TABLE, True) + _rows(EXTRA_ROWS, False)
        index: dict[BaseTag, ProfileRow] = {}
        for row in rows:
            if row.tag in index:
                raise ValueError(f"{row.name}: {row.tag} appears twice in the profile table")
            index[row.tag] = row
        return cls(index)

    @property
    def standard_rows(self) -> int:
        """Rows taken from Table E.1-1, pattern rows included."""
        return sum(r.from_standard for r in self.rows.values()) + len(PATTERN_ROWS)

    @property
    def extra_rows(self) -> int:
        return sum(not r.from_standard for r in self.rows.values())

    def action_for(self, tag: BaseTag, vr: str, *, shift_dates: bool, is_sequence: bool) -> Action:
        """The action for one element of VR `vr` (SQ when `is_sequence`)."""
        if tag.is_private or tag.element == 0:
            return "X"  # private attributes; group lengths (meaningless once values change)
        if tag.group % 2 == 0 and (0x5000 <= tag.group <= 0x50FF or 0x6000 <= tag.group <= 0x60FF):
            return "X"  # curves and overlays: the whole group, so no orphan overlay remains
        row = self.rows.get(tag)
        if row is None:
            return _by_vr(tag, vr, shift_dates=shift_dates, is_sequence=is_sequence)
        if shift_dates and row.modified_dates and vr in _DATE_VRS:
            return "SHIFT"
        if shift_dates and row.modified_dates and vr in _TIME_VRS:
            return "K"  # whole-day shifts leave a time of day as consistent as it was
        if tag in (PATIENT_ID, PATIENT_NAME):
            return "PSEUDONYM"
        return _resolve(row.basic, tag, is_sequence=is_sequence)


def _resolve(basic: TableAction, tag: BaseTag, *, is_sequence: bool) -> Action:
    """A compound action resolved without the IOD tables (see the module docstring)."""
    basic = OVERRIDES.get(tag, (basic, ""))[0]
    needs_value = tag in TYPE1_IN_IMAGES
    if basic == "X/Z/U*":
        # Keep the references and replace the instance UIDs inside, so they still resolve.
        return "RECURSE" if is_sequence else "U"
    if basic == "K":
        return "RECURSE" if is_sequence else "K"
    if is_sequence and basic in ("X/Z", "X/Z/D"):
        # An empty Type 3 sequence is an error (a present sequence needs its items); only a
        # Type 2 sequence may, and must, stay present and empty.
        return "Z" if tag in TYPE2_SEQUENCES_IN_IMAGES else "X"
    if basic == "X/Z":
        return "Z"
    if basic == "X/D":
        return "D" if needs_value else "X"
    if basic in ("X/Z/D", "Z/D"):
        return "D" if needs_value else "Z"
    return basic  # type: ignore[return-value]  # the simple actions: D, Z, X, U


def _by_vr(tag: BaseTag, vr: str, *, shift_dates: bool, is_sequence: bool) -> Action:
    """Attributes the table does not list: judged by what their VR can hold."""
    if is_sequence:
        return "RECURSE"
    if vr == "UN":
        return "X"  # an attribute nobody here can read cannot be judged safe
    if vr in _DATE_VRS:
        if shift_dates:
            return "SHIFT"
        return "D" if tag in TYPE1_IN_IMAGES else "Z"
    if vr in _TIME_VRS:
        if shift_dates:
            return "K"
        return "D" if tag in TYPE1_IN_IMAGES else "Z"
    if vr == "PN":
        return "Z"
    if vr == "UI":
        return "UID_BY_VR"
    return "K"


def is_class_uid(keyword: str, value: str) -> bool:
    """True for UIDs that name a SOP class, transfer syntax or coding scheme: never replaced."""
    return keyword in _CLASS_UID_KEYWORDS or UID(value).name != value  # a registered UID
