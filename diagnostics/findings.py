"""The findings this project knows, with display names and SNOMED CT codes.

Coded concepts, not strings: reports and model packages carry these codes so that a PACS or a
registry can interpret a finding without knowing our short identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class KnownFinding:
    code: str
    display: str
    snomed: str
    snomed_meaning: str


KNOWN_FINDINGS: dict[str, KnownFinding] = {
    f.code: f
    for f in (
        KnownFinding("nodule", "Lung nodule", "786838002", "Pulmonary nodule"),
        KnownFinding("consolidation", "Consolidation", "95436008", "Lung consolidation"),
        KnownFinding("cardiomegaly", "Cardiomegaly", "8186001", "Cardiomegaly"),
    )
}
