"""Preprocessing as data: a spec stored in every model package, and the MONAI pipeline from it.

Training and serving call the same `deterministic_transforms` with the same spec, so what the
model saw in training is exactly what it sees in production; nothing in serving hard-codes a size
or a window. Augmentation is part of the spec but only ever applied when `train=True`.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from monai.transforms import (
    Compose,
    RandAdjustContrast,
    RandAffine,
    RandGaussianNoise,
    Resize,
    ScaleIntensityRange,
    ScaleIntensityRangePercentiles,
)
from pydantic import Field, model_validator

from diagnostics.dicom.image import DicomImage
from diagnostics.strict import StrictModel


class Augmentation(StrictModel):
    """Random training-time perturbations, each applied with probability `probability`.

    No flips: the heart's side is anatomy, and a mirrored chest is not a valid radiograph.
    """

    probability: float = Field(default=0.8, ge=0.0, le=1.0)
    rotate_degrees: float = Field(default=6.0, ge=0.0, le=45.0)
    scale_fraction: float = Field(default=0.08, ge=0.0, le=0.5)
    translate_fraction: float = Field(default=0.05, ge=0.0, le=0.5)
    noise_std: float = Field(default=0.02, ge=0.0, le=0.5)
    gamma_range: tuple[float, float] = (0.8, 1.25)

    @model_validator(mode="after")
    def _check_gamma(self) -> Augmentation:
        # A gamma of zero or below turns intensities into inf/NaN, which the [0, 1] clamp in
        # training hides rather than reports.
        low, high = self.gamma_range
        if not 0.0 < low <= high:
            raise ValueError(f"gamma_range {self.gamma_range} must satisfy 0 < low <= high")
        return self


class PreprocessSpec(StrictModel):
    """Everything needed to turn a decoded radiograph into the model's input tensor."""

    size: tuple[int, int] = (256, 256)
    """Model input (height, width) in pixels; the whole image is resampled to it."""
    channels: Literal[1, 3] = 1
    """3 repeats the grey image, for backbones designed for RGB input."""
    intensity: Literal["percentile", "window"] = "percentile"
    """percentile: map [lower, upper] percentiles to [0, 1]; window: the image's first VOI window
    (falling back to percentiles when the image has none)."""
    lower_percentile: float = Field(default=0.5, ge=0.0, lt=50.0)
    upper_percentile: float = Field(default=99.5, gt=50.0, le=100.0)
    augmentation: Augmentation = Augmentation()

    @model_validator(mode="after")
    def _check_size(self) -> PreprocessSpec:
        if not all(32 <= side <= 2048 for side in self.size):
            raise ValueError(f"size {self.size} must be between 32 and 2048 pixels per side")
        return self


def _intensity(
    spec: PreprocessSpec, image: DicomImage | None
) -> ScaleIntensityRange | ScaleIntensityRangePercentiles:
    if spec.intensity == "window" and image is not None and image.windows:
        window = image.windows[0]
        return ScaleIntensityRange(
            a_min=window.center - window.width / 2,
            a_max=window.center + window.width / 2,
            b_min=0.0,
            b_max=1.0,
            clip=True,
        )
    return ScaleIntensityRangePercentiles(
        lower=spec.lower_percentile,
        upper=spec.upper_percentile,
        b_min=0.0,
        b_max=1.0,
        clip=True,
    )


def deterministic_transforms(spec: PreprocessSpec, image: DicomImage | None = None) -> Compose:
    """Resize (area-averaged, so no aliasing) and then scale intensities to [0, 1].

    Resizing first makes the percentile estimate cheap on full-size radiographs; on the
    averaged image it differs from the full-resolution one only in the noise.
    """
    return Compose([Resize(spatial_size=spec.size, mode="area"), _intensity(spec, image)])


def augment_transforms(spec: PreprocessSpec) -> Compose:
    """The training-only random part; seed it with `set_random_state` for reproducible runs."""
    aug = spec.augmentation
    p = aug.probability
    return Compose(
        [
            RandAffine(
                prob=p,
                rotate_range=np.deg2rad(aug.rotate_degrees),
                scale_range=(aug.scale_fraction, aug.scale_fraction),
                translate_range=(
                    aug.translate_fraction * spec.size[0],
                    aug.translate_fraction * spec.size[1],
                ),
                padding_mode="border",
            ),
            RandAdjustContrast(prob=p, gamma=aug.gamma_range),
            RandGaussianNoise(prob=p, std=aug.noise_std),
        ]
    )


def to_model_input(array: torch.Tensor | np.ndarray, spec: PreprocessSpec) -> torch.Tensor:
    """(1, H, W) -> float32 (channels, H, W), repeating grey into 3 channels when asked."""
    tensor = torch.as_tensor(np.asarray(array), dtype=torch.float32)
    if spec.channels == 3:
        tensor = tensor.repeat(3, 1, 1)
    return tensor.contiguous()


def preprocess_image(image: DicomImage, spec: PreprocessSpec, frame: int = 0) -> torch.Tensor:
    """The inference path: one frame of a decoded image to the model's (C, H, W) input."""
    # A writable copy: the decoded pixels are read-only, and torch refuses to wrap those.
    pixels = np.array(image.pixels[frame], dtype=np.float32)[np.newaxis]
    resized = deterministic_transforms(spec, image)(pixels)
    return to_model_input(resized, spec)
