"""Screening: gate, ONNX Runtime engine and interpretation, from DICOM to StudyResult.

The stages and their contract: `stages.py` and docs/architecture.md ("Screening stages").
"""

from diagnostics.screening.outcome import AnalysedInstance, ScreeningOutcome, with_output_failures
from diagnostics.screening.pipeline import ScreenBatch, Screener, failed_batch
from diagnostics.screening.stages import Rejected

__all__ = [
    "AnalysedInstance",
    "Rejected",
    "ScreenBatch",
    "Screener",
    "ScreeningOutcome",
    "failed_batch",
    "with_output_failures",
]
