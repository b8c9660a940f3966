"""Class activation maps kept with each result, so the review page can show the heatmap.

Why store them rather than recompute them when a page is opened: the heatmap must be the
evidence of the very run whose findings the page shows. By the time a radiologist opens a
study the service may run another model version, and a recomputed map would then explain
findings that were never reported. The maps are small (findings x the model's CAM grid, e.g.
3 x 20 x 20 float32, under 5 KB per image), so they go into the database in the same
transaction as the result: a result never exists without its maps, nor maps without a result.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from diagnostics.errors import StoreError


@dataclass(frozen=True)
class InstanceMaps:
    """The class activation maps of one analysed image, in logit units."""

    sop_instance_uid: str
    frame: int
    codes: tuple[str, ...]
    """Finding codes in the order of the first axis of `maps` (the model's order)."""
    maps: np.ndarray
    """float32 (K, h, w) on the model's CAM grid, which covers the whole image."""

    def __post_init__(self) -> None:
        if self.maps.ndim != 3 or self.maps.shape[0] != len(self.codes):
            raise StoreError(
                f"class activation maps of shape {self.maps.shape} do not match the "
                f"{len(self.codes)} finding codes {self.codes}"
            )

    def for_code(self, code: str) -> np.ndarray:
        return np.asarray(self.maps[self.codes.index(code)])


def to_row(study_instance_uid: str, version: int, item: InstanceMaps) -> tuple[object, ...]:
    maps = np.ascontiguousarray(item.maps, dtype="<f4")
    _, height, width = maps.shape
    return (
        study_instance_uid,
        version,
        item.sop_instance_uid,
        item.frame,
        json.dumps(list(item.codes)),
        height,
        width,
        maps.tobytes(),
    )


def from_row(row: Sequence[object]) -> InstanceMaps:
    """A stored row (sop_instance_uid, frame, codes, height, width, data) back as maps."""
    sop, frame, codes_text, height, width, data = row
    codes = tuple(json.loads(str(codes_text)))
    if not (
        isinstance(data, bytes)
        and isinstance(frame, int)
        and isinstance(height, int)
        and isinstance(width, int)
        and len(data) == 4 * len(codes) * height * width
    ):
        raise StoreError(f"the stored class activation maps of {sop} are malformed")
    maps = np.frombuffer(data, dtype="<f4").reshape(len(codes), height, width)
    return InstanceMaps(str(sop), frame, codes, maps.astype(np.float32))
