"""Free text inside the sequences the profile keeps: code items and other text, cleaned.

Table E.1-1 lists the sequences that identify (Request Attributes, Procedure Code, Other
Patient IDs, ...), but a sequence it does not list is kept and its items walked (Note 1 of
E.1), and those items carry free text the table never names: a Code Meaning or a Concept
Name's meaning typed by hand at the modality ("Dr Smith's protocol"), a Text Value, a local
coding scheme whose code values are the patient's initials. Inside such an item:

- a code from a public coding scheme (`PUBLIC_SCHEMES`) keeps its value and scheme, and its
  meaning becomes the standard meaning (pydicom's concept dictionary) or "<scheme> <value>";
- a code from any other scheme (99xxx, L, a site's own) gets a keyed token as its value, the
  scheme `LOCAL_SCHEME`, and the meaning "local code <token>": still consistent within one
  export, so the same local code maps to the same token;
- every other text value (SH, LO, ST, LT, UT, UC) not in the table becomes `DUMMY_TEXT`,
  present where it was present so Type 1 attributes stay valid.

Coded enumerations (CS) are kept: their character set cannot spell free prose and the
semantics (laterality, view, modality) are what a researcher needs.
"""

from __future__ import annotations

from functools import cache
from typing import cast

from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag

from diagnostics.deid.keys import Keys

DUMMY_TEXT = "ANONYMIZED"
LOCAL_SCHEME = "99DEID"
TEXT_VRS = frozenset({"SH", "LO", "ST", "LT", "UT", "UC"})
PUBLIC_SCHEMES = frozenset(
    {"DCM", "SCT", "SRT", "LN", "UCUM", "FMA", "RADLEX", "NCIt", "MSH", "UMLS", "I10", "ICD10"}
    | {"MDC", "NEU", "RXNORM", "IBSI", "BARI", "ITIS_TSN", "NDC", "PUBCHEM_CID", "ACR", "HL7"}
)
"""Schemes whose codes are published: a code value there names a concept, never a person."""

CODE_VALUE_TAGS = frozenset(Tag(t) for t in (0x00080100, 0x00080119, 0x00080120))
"""Code Value, Long Code Value, URN Code Value."""
SCHEME = Tag(0x00080102)
SCHEME_VERSION = Tag(0x00080103)
MEANING = Tag(0x00080104)
CODE_TAGS = CODE_VALUE_TAGS | {SCHEME, SCHEME_VERSION, MEANING}


@cache
def _standard_meanings() -> dict[tuple[str, str], str]:
    """(scheme, value) → meaning for the codes pydicom ships (DICOM PS3.16's concepts)."""
    from pydicom.sr._concepts_dict import concepts  # loaded on first use: 18,000 codes

    # Untyped in pydicom: scheme -> keyword -> code value -> (meaning, context groups).
    table = cast(dict[str, dict[str, dict[str, tuple[str, list[int]]]]], concepts)
    found: dict[tuple[str, str], str] = {}
    for scheme, by_keyword in table.items():
        for by_value in by_keyword.values():
            for value, (meaning, _) in by_value.items():
                found[(scheme, value)] = meaning
    return found


def _code_value(item: Dataset) -> str:
    for tag in CODE_VALUE_TAGS:
        if tag in item and item[tag].value:
            return str(item[tag].value)
    return ""


def clean_code_element(item: Dataset, elem: DataElement, keys: Keys) -> DataElement | None:
    """The cleaned copy of one element of a code item (`elem.tag` in `CODE_TAGS`)."""
    scheme = str(item.get("CodingSchemeDesignator", "") or "").strip()
    value = _code_value(item)
    public = scheme in PUBLIC_SCHEMES
    token = keys.token("code", f"{scheme}\x1f{value}")
    tag: BaseTag = elem.tag
    if tag == MEANING:
        if not elem.value:
            return elem
        if public:
            standard = _standard_meanings().get((scheme, value))
            meaning = standard or f"{scheme} {value}"
        else:
            meaning = f"local code {token}"
        return DataElement(tag, elem.VR, meaning[:64])
    if public:
        return elem
    if tag == SCHEME:
        return DataElement(tag, elem.VR, LOCAL_SCHEME if elem.value else elem.value)
    if tag == SCHEME_VERSION:
        return None  # the version of a site's own scheme says which site
    return DataElement(tag, elem.VR, token if elem.value else elem.value)


def clean_text_element(elem: DataElement) -> DataElement:
    """Any other text in a kept item: a dummy where there was a value."""
    return DataElement(elem.tag, elem.VR, DUMMY_TEXT if elem.value else elem.value)
