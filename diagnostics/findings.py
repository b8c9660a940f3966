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
        # Findings labelled by the public research layouts (diagnostics.datasets).
        KnownFinding("pneumonia", "Pneumonia", "233604007", "Pneumonia"),
        KnownFinding("effusion", "Pleural effusion", "60046008", "Pleural effusion"),
        KnownFinding("atelectasis", "Atelectasis", "46621007", "Atelectasis"),
        KnownFinding("pneumothorax", "Pneumothorax", "36118008", "Pneumothorax"),
        KnownFinding("covid19", "COVID-19", "840539006", "COVID-19"),
    )
}
