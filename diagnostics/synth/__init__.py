"""Synthetic chest radiograph studies with ground truth: the project's own data."""

from diagnostics.synth.contact_sheet import write_contact_sheet
from diagnostics.synth.study import (
    FINDING_CODES,
    LABEL_COLUMNS,
    StudyTruth,
    SynthConfig,
    generate,
    iter_label_rows,
)

__all__ = [
    "FINDING_CODES",
    "LABEL_COLUMNS",
    "StudyTruth",
    "SynthConfig",
    "generate",
    "iter_label_rows",
    "write_contact_sheet",
]
