"""The dataset record every layout produces and training, evaluation and comparison consume.

It lives here, at the bottom of `diagnostics.datasets`, so that the layouts (which make records)
never import training (which uses them): data flows up from datasets to `diagnostics.train`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

UNKNOWN_LABEL = -1
"""A label that is not known for this example (e.g. CheXpert "uncertain" under the `ignore`
policy): training loss, validation AUROC, calibration and metrics skip it for that finding."""

Box = tuple[float, float, float, float]
"""(x0, y0, x1, y1) as fractions of the image width and height, as `Example.boxes` holds them."""


@dataclass(frozen=True)
class Example:
    """One labelled study: the file to read, who it belongs to, and its 0/1 labels.

    A label may also be `UNKNOWN_LABEL` (-1). For layouts without DICOM UIDs,
    `study_instance_uid` holds the layout's own identifier of the study (e.g. an image name).
    """

    path: Path
    study_instance_uid: str
    patient_id: str
    labels: tuple[int, ...]
    details: dict[str, str] = field(default_factory=dict, compare=False)
    boxes: tuple[Box | None, ...] = ()
    """Per finding, where it is as (x0, y0, x1, y1) fractions of the image, when known."""
