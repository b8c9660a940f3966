"""Synthetic chest radiograph studies with ground truth: the project's own data.

`generate` writes a labelled folder; its contract (columns, reader, writer) is
`diagnostics.datasets.labelled`'s.
"""

from diagnostics.synth.contact_sheet import write_contact_sheet
from diagnostics.synth.study import (
    StudyTruth,
    SynthConfig,
    generate,
)

__all__ = [
    "StudyTruth",
    "SynthConfig",
    "generate",
    "write_contact_sheet",
]
