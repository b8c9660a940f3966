"""Screening: gate, ONNX Runtime engine and interpretation, from DICOM to StudyResult."""

from diagnostics.screening.outcome import AnalysedInstance, ScreeningOutcome, with_output_failures
from diagnostics.screening.pipeline import Rejected, ScreenBatch, Screener, failed_batch

__all__ = [
    "AnalysedInstance",
    "Rejected",
    "ScreenBatch",
    "Screener",
    "ScreeningOutcome",
    "failed_batch",
    "with_output_failures",
]
