"""Preprocessing as data: a spec stored in every model package, and the MONAI pipeline from it.

Training and serving call the same `preprocess_image` with the same spec, so what the model saw
in training is exactly what it sees in production; nothing in serving hard-codes a size or a
window. Augmentation is part of the spec but only ever applied when `train=True`.

`deterministic_transforms` (MONAI) defines the preprocessing. `preprocess_image` computes the
same function without MONAI's per-call overhead (MetaTensor wrapping, two sorts for the two
percentiles, multi-threaded elementwise kernels on a 2-core machine): about 4 ms of the 7 ms an
uncompressed 512 x 512 image used to cost. Tests hold it to the transforms within
`FAST_PATH_TOLERANCE`.
"""

from __future__ import annotations

import warnings
from functools import lru_cache
from typing import Literal

import numpy as np
import scipy.sparse
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


FAST_PATH_TOLERANCE = 1e-5
"""Largest difference, on the [0, 1] scale, allowed between `preprocess_image` and
`reference_preprocess`. Measured: at most 4e-7 (float32 summation order) on synthetic
radiographs of 512 to 2048 pixels resized to 256 to 1024. The resize differs by rounding in the
last place of the pixel values, which the scaling multiplies by value / (high - low): a pair of
percentiles only a hair apart (49.9 and 50.1) can exceed the bound."""


def reference_preprocess(image: DicomImage, spec: PreprocessSpec, frame: int = 0) -> torch.Tensor:
    """One frame through the MONAI transforms themselves: the definition `preprocess_image`
    is tested against, and the "before" of `benchmarks/bench_preprocess.py`."""
    # A writable copy: the decoded pixels are read-only, and torch refuses to wrap those.
    pixels = np.array(image.pixels[frame], dtype=np.float32)[np.newaxis]
    resized = deterministic_transforms(spec, image)(pixels)
    return to_model_input(resized, spec)


@lru_cache(maxsize=32)
def _area_weights(size_full: int, size_out: int, reduction: int = 0) -> scipy.sparse.csr_matrix:
    """(size_out, ceil(size_full / 2**reduction)) averaging weights of PyTorch's adaptive average
    pooling over an axis of `size_full` pixels, which MONAI's `Resize(mode="area")` runs:
    output i is the mean of full-size pixels floor(i * n / m) to ceil((i + 1) * n / m) - 1.

    With `reduction` r the input is a JPEG 2000 resolution level: its pixel j is the codec's
    low-pass centred on full-size pixel 2**r * j, standing for the 2**r pixels around it (not
    the 2**r from there on, as a box mean would). Weighting each output by how much of that
    footprint falls in its bin keeps the image where the full decode puts it; without it the
    level sits (2**r - 1) / 2 pixels off, and the input differs four times as much.
    """
    step = 2**reduction
    size_in = -(-size_full // step)
    index = np.arange(size_out)
    starts = index * size_full // size_out
    ends = -(-(index + 1) * size_full // size_out)
    # Full-size extent of input pixel j: [step * j + 0.5 - step / 2, + step), within the image
    # (step 1: exactly pixel j). Candidates per output: the inputs that can overlap its bin.
    first = np.maximum(0, np.floor((starts + step / 2 - 0.5) / step).astype(np.intp) - 1)
    width = int((ends - starts).max()) // step + 3
    columns = first[:, np.newaxis] + np.arange(width)
    low = np.clip(step * columns + 0.5 - step / 2, 0, size_full)
    high = np.clip(step * columns + 0.5 + step / 2, 0, size_full)
    overlap = np.minimum(ends[:, np.newaxis], high) - np.maximum(starts[:, np.newaxis], low)
    overlap = np.where((columns < size_in) & (overlap > 0), overlap, 0.0)
    weights = overlap / overlap.sum(axis=1, keepdims=True)
    keep = weights > 0
    rows = np.broadcast_to(index[:, np.newaxis], weights.shape)[keep]
    return scipy.sparse.csr_matrix(
        (weights[keep].astype(np.float32), (rows, columns[keep])), shape=(size_out, size_in)
    )


def area_resize(
    pixels: np.ndarray,
    size: tuple[int, int],
    reduction: int = 0,
    full_shape: tuple[int, int] | None = None,
) -> np.ndarray:
    """A 2-D image resampled like `Resize(mode="area")`: the pooling is separable, so it is two
    sparse products (rows, then columns) that read the pixels in place, with no copy.

    A JPEG 2000 level (`reduction` > 0) is resampled as its `full_shape` image would be.
    """
    if reduction == 0 and pixels.shape == size:
        return np.array(pixels, dtype=np.float32)
    full_rows, full_columns = full_shape or pixels.shape
    rows = _area_weights(full_rows, size[0], reduction) @ pixels
    columns = _area_weights(full_columns, size[1], reduction) @ rows.T
    return np.ascontiguousarray(columns.T)


def _percentile_range(pixels: np.ndarray, spec: PreprocessSpec) -> tuple[np.float32, np.float32]:
    """Both percentiles from one partial sort, interpolated in float32 the way `torch.quantile`
    (what MONAI calls on an image of up to a million pixels) does it: a near-equal pair of
    percentiles turns any rounding difference into a visible one."""
    flat = pixels.ravel()
    quantiles = np.array([spec.lower_percentile, spec.upper_percentile], dtype=np.float32) / 100
    ranks = quantiles * np.float32(flat.size - 1)
    below = ranks.astype(np.intp)
    above = np.minimum(below + 1, flat.size - 1)
    weights = ranks - below.astype(np.float32)
    ordered = np.partition(flat, np.unique(np.concatenate([below, above])))
    start, end = ordered[below], ordered[above]
    # torch.lerp: from the nearer end, for accuracy
    low, high = np.where(
        weights < 0.5, start + weights * (end - start), end - (end - start) * (1 - weights)
    )
    return np.float32(low), np.float32(high)


def _scale(pixels: np.ndarray, low: float | np.float32, high: float | np.float32) -> np.ndarray:
    """`ScaleIntensityRange(low, high, 0, 1, clip=True)` in place, its float32 arithmetic and
    its degenerate case (a flat image: shifted, not scaled or clipped) included."""
    if high - low == 0.0:
        warnings.warn("Divide by zero (a_min == a_max)", Warning, stacklevel=3)
        pixels -= low
        return pixels
    pixels -= low
    pixels /= high - low
    return np.clip(pixels, 0.0, 1.0, out=pixels)


def preprocess_image(image: DicomImage, spec: PreprocessSpec, frame: int = 0) -> torch.Tensor:
    """The inference path: one frame of a decoded image to the model's (C, H, W) input.

    The same function as `reference_preprocess` (within `FAST_PATH_TOLERANCE`): area resize to
    the spec's size first, then the intensity scaling on the small image. An image decoded at a
    reduced JPEG 2000 level (`image.reduction`) is resized as the full image would be; its
    input then differs from the full decode's by the codec's low-pass (`tests/dicom/test_j2k`).
    """
    full_shape = (image.info.rows, image.info.columns)
    resized = area_resize(image.pixels[frame], spec.size, image.reduction, full_shape)
    if spec.intensity == "window" and image.windows:
        window = image.windows[0]
        low: float | np.float32 = window.center - window.width / 2
        high: float | np.float32 = window.center + window.width / 2
    else:
        low, high = _percentile_range(resized, spec)
    return to_model_input(_scale(resized, low, high)[np.newaxis], spec)
