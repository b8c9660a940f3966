"""The findings this project knows, with display names and SNOMED CT codes.

Coded concepts, not strings: reports and model packages carry these codes so that a PACS or a
registry can interpret a finding without knowing our short identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass

from diagnostics.i18n import N_


@dataclass(frozen=True)
class KnownFinding:
    code: str
    display: str
    """English; the catalogues of `diagnostics.i18n` translate it (the SNOMED concept stays)."""
    snomed: str
    snomed_meaning: str


KNOWN_FINDINGS: dict[str, KnownFinding] = {
    f.code: f
    for f in (
        KnownFinding("nodule", N_("Lung nodule"), "786838002", "Pulmonary nodule"),
        KnownFinding("consolidation", N_("Consolidation"), "95436008", "Lung consolidation"),
        KnownFinding("cardiomegaly", N_("Cardiomegaly"), "8186001", "Cardiomegaly"),
        # Findings labelled by the public research layouts (diagnostics.datasets).
        KnownFinding("pneumonia", N_("Pneumonia"), "233604007", "Pneumonia"),
        KnownFinding("effusion", N_("Pleural effusion"), "60046008", "Pleural effusion"),
        KnownFinding("atelectasis", N_("Atelectasis"), "46621007", "Atelectasis"),
        KnownFinding("pneumothorax", N_("Pneumothorax"), "36118008", "Pneumothorax"),
        KnownFinding("covid19", N_("COVID-19"), "840539006", "COVID-19"),
    )
}
