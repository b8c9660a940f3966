"""What screening hands to its outputs: the StudyResult plus the evidence behind it.

The JSON result is the contract; the DICOM outputs (SR, overlay, presentation state) also need
the decoded source images and the class activation maps, which never go into JSON.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from diagnostics.dicom.image import DicomImage
from diagnostics.package import ModelPackage
from diagnostics.results import OutputFailure, StudyResult


@dataclass(frozen=True)
class AnalysedInstance:
    """One image the model read, with what it produced for it."""

    image: DicomImage
    """The decoded source instance; `image.info.dataset` is its header (no pixel data)."""
    frame: int
    """Which frame was read (0 for single-frame radiographs)."""
    probabilities: dict[str, float]
    """Calibrated probability per finding code."""
    cams: np.ndarray
    """float32 (K, h, w) class activation maps in logit units, in the manifest's finding order;
    h, w are the model's CAM grid, not the image size (see `interpret.heatmap`)."""
    appearance_score: float


@dataclass(frozen=True)
class ScreeningOutcome:
    """A study's result and, when it was analysed, the instances and package behind it."""

    result: StudyResult
    analysed: tuple[AnalysedInstance, ...] = ()
    package: ModelPackage | None = None

    def instance(self, sop_instance_uid: str) -> AnalysedInstance:
        for item in self.analysed:
            if item.image.uids.sop_instance_uid == sop_instance_uid:
                return item
        raise KeyError(sop_instance_uid)


def with_output_failures(
    outcome: ScreeningOutcome, failures: Sequence[OutputFailure]
) -> ScreeningOutcome:
    """The same outcome, its result naming the DICOM outputs that could not be built."""
    result = outcome.result.model_copy(update={"output_failures": list(failures)})
    return replace(outcome, result=StudyResult.model_validate(result.model_dump()))
