"""Appearance check: refuse images that do not look like the ones the model was trained on.

DICOM headers lie (a knee labelled CHEST, a lateral view labelled PA, an inverted image); a CNN
still answers confidently. The profile records where the model's preprocessed training images are
bright and dark on a coarse grid. An image is scored by its root-mean-square z-score against that
profile, divided by a threshold fitted on held-out images, so a score above 1.0 means "unlike
anything in training": the image is not analysed. The profile is data in the model package.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from pydantic import Field, model_validator

from diagnostics.strict import StrictModel

GRID = 16
"""The profile's grid side: coarse enough to ignore findings and noise, fine enough for layout."""
STD_FLOOR = 0.02
"""Cells that barely vary in training would otherwise turn tiny differences into huge z-scores."""
THRESHOLD_QUANTILE = 0.995
THRESHOLD_MARGIN = 1.25


class AppearanceProfile(StrictModel):
    """Per-cell mean and spread of the training images' thumbnails, and the refusal threshold."""

    grid: int = Field(ge=2, le=64)
    mean: list[float]
    std: list[float]
    threshold: float = Field(gt=0.0, allow_inf_nan=False)
    """RMS z-score at which an image is refused (the score reported is divided by this)."""
    fitted_on: str = Field(min_length=1)
    threshold_chosen_on: str = Field(min_length=1)

    @model_validator(mode="after")
    def _check_shapes(self) -> AppearanceProfile:
        cells = self.grid * self.grid
        if len(self.mean) != cells or len(self.std) != cells:
            raise ValueError(f"mean and std must have grid*grid = {cells} values")
        if not all(np.isfinite(self.mean)) or min(self.std) < STD_FLOOR:
            raise ValueError(f"mean must be finite and std at least {STD_FLOOR}")
        return self

    def score(self, images: torch.Tensor | np.ndarray) -> np.ndarray:
        """(N, C, H, W) model inputs -> (N,) scores; above 1.0 is refused."""
        cells = thumbnails(images, self.grid)
        z = (cells - np.asarray(self.mean)) / np.asarray(self.std)
        rms = np.sqrt(np.mean(z * z, axis=1))
        return np.asarray(rms / self.threshold, dtype=np.float64)


def thumbnails(images: torch.Tensor | np.ndarray, grid: int = GRID) -> np.ndarray:
    """(N, C, H, W) -> (N, grid*grid) area averages of the channel mean."""
    tensor = torch.as_tensor(np.asarray(images), dtype=torch.float32)
    if tensor.ndim != 4:
        raise ValueError(f"expected (N, C, H, W) images, got shape {tuple(tensor.shape)}")
    grey = tensor.mean(dim=1, keepdim=True)
    pooled = torch.nn.functional.adaptive_avg_pool2d(grey, grid)
    return np.asarray(pooled.flatten(1).numpy(), dtype=np.float64)


def fit_profile(
    reference: Iterable[torch.Tensor],
    held_out: Iterable[torch.Tensor],
    *,
    fitted_on: str,
    threshold_chosen_on: str,
    grid: int = GRID,
) -> AppearanceProfile:
    """Mean and spread from `reference` images; the threshold from `held_out` images.

    Each iterable yields (C, H, W) model inputs. The threshold is the 99.5th percentile of the
    held-out scores times a 25 % margin, so about one training-like image in a few hundred
    scores near the limit and practically none above it.
    """
    ref = np.concatenate([thumbnails(x.unsqueeze(0), grid) for x in reference])
    held = np.concatenate([thumbnails(x.unsqueeze(0), grid) for x in held_out])
    if len(ref) < 2 or len(held) < 2:
        raise ValueError("fitting an appearance profile needs at least two images in each set")
    mean = ref.mean(axis=0)
    std = np.maximum(ref.std(axis=0), STD_FLOOR)
    z = (held - mean) / std
    scores = np.sqrt(np.mean(z * z, axis=1))
    threshold = float(np.quantile(scores, THRESHOLD_QUANTILE)) * THRESHOLD_MARGIN
    return AppearanceProfile(
        grid=grid,
        mean=[float(v) for v in mean],
        std=[float(v) for v in std],
        threshold=threshold,
        fitted_on=fitted_on,
        threshold_chosen_on=threshold_chosen_on,
    )
