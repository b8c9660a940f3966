"""Preprocessing spec and pipeline: what the model sees is a pure, checkable function of the spec.

Training and serving share these transforms, so each expectation here is computed independently
(block means, a hand-written window, numpy percentiles) rather than by calling MONAI again.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError
from pydicom.uid import ExplicitVRLittleEndian

from diagnostics.dicom import DicomImage, read_instance
from diagnostics.preprocess import (
    FAST_PATH_TOLERANCE,
    Augmentation,
    PreprocessSpec,
    area_resize,
    augment_transforms,
    deterministic_transforms,
    preprocess_image,
    reference_preprocess,
)
from diagnostics.synth.dx import build_dx
from diagnostics.synth.study import SynthConfig, make_study

CONFIG = SynthConfig(rows=96, columns=96, spacing_mm=4.0)
HALF = PreprocessSpec(size=(48, 48))
"""Exactly half the synthetic image: area resizing is then a plain 2 x 2 block mean."""


def _write_study(folder: Path, photometric: str, seed: int = 3, index: int = 0) -> Path:
    """One synthetic study written uncompressed with the requested photometric interpretation."""
    _, pixels, patient, acquisition = make_study(seed, index, index, CONFIG)
    acquisition = dataclasses.replace(
        acquisition, photometric=photometric, transfer_syntax=ExplicitVRLittleEndian
    )
    path = folder / f"{photometric}.dcm"
    build_dx(pixels, patient, acquisition).save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def twins(tmp_path_factory: pytest.TempPathFactory) -> tuple[DicomImage, DicomImage]:
    """The same synthetic radiograph stored as MONOCHROME2 and as MONOCHROME1."""
    folder = tmp_path_factory.mktemp("twins")
    mono2 = read_instance(_write_study(folder, "MONOCHROME2"))
    mono1 = read_instance(_write_study(folder, "MONOCHROME1"))
    return mono2, mono1


@pytest.fixture(scope="module")
def image(twins: tuple[DicomImage, DicomImage]) -> DicomImage:
    return twins[0]


def _block_mean(pixels: np.ndarray, factor: int = 2) -> np.ndarray:
    rows, cols = pixels.shape
    blocks = pixels.reshape(rows // factor, factor, cols // factor, factor)
    return np.asarray(blocks.mean(axis=(1, 3)))


# ---- the spec -------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(31, 64), (64, 16), (64, 4096), (0, 0)])
def test_size_out_of_range_is_refused(size: tuple[int, int]) -> None:
    with pytest.raises(ValidationError, match="size"):
        PreprocessSpec(size=size)


@pytest.mark.parametrize("size", [(32, 32), (2048, 2048), (256, 320)])
def test_size_limits_are_inclusive(size: tuple[int, int]) -> None:
    assert PreprocessSpec(size=size).size == size


@pytest.mark.parametrize(
    "fields",
    [
        {"sizes": (64, 64)},
        {"channels": 2},
        {"intensity": "zscore"},
        {"lower_percentile": 60.0},
        {"upper_percentile": 40.0},
        {"augmentation": {"flip": True}},
        {"augmentation": {"probability": 1.5}},
    ],
    ids=lambda fields: next(iter(fields)),
)
def test_invalid_fields_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        PreprocessSpec.model_validate(fields)


def test_spec_is_frozen() -> None:
    with pytest.raises(ValidationError):
        HALF.size = (64, 64)


def test_spec_json_round_trip_is_equal() -> None:
    spec = PreprocessSpec(
        size=(96, 64),
        channels=3,
        intensity="window",
        lower_percentile=1.0,
        upper_percentile=99.0,
        augmentation=Augmentation(probability=0.5, rotate_degrees=3.0, gamma_range=(0.9, 1.1)),
    )
    again = PreprocessSpec.model_validate_json(spec.model_dump_json())
    assert again == spec
    assert again.size == (96, 64) and again.augmentation.gamma_range == (0.9, 1.1)


# ---- the fast path against the MONAI transforms that define it -------------------------------


def _max_difference(image: DicomImage, spec: PreprocessSpec, frame: int = 0) -> float:
    fast = preprocess_image(image, spec, frame)
    reference = reference_preprocess(image, spec, frame)
    assert fast.shape == reference.shape and fast.dtype == reference.dtype
    return float((fast - reference).abs().max())


@pytest.mark.parametrize(
    "size",
    [(48, 48), (32, 32), (40, 70), (60, 50), (96, 96), (128, 160), (37, 95)],
    ids=["half", "third", "uneven", "non-whole-ratio", "same", "enlarged", "mixed"],
)
@pytest.mark.parametrize("intensity", ["percentile", "window"])
def test_fast_path_matches_the_monai_transforms(
    image: DicomImage, size: tuple[int, int], intensity: str
) -> None:
    spec = PreprocessSpec(size=size, intensity=intensity)  # type: ignore[arg-type]
    assert _max_difference(image, spec) <= FAST_PATH_TOLERANCE


@pytest.mark.parametrize("percentiles", [(0.0, 100.0), (0.5, 99.5), (2.0, 98.0), (25.0, 75.0)])
def test_fast_path_matches_at_any_percentiles(
    image: DicomImage, percentiles: tuple[float, float]
) -> None:
    """Any sensible pair. (A pair as close as 49.9 and 50.1 magnifies the resize's float32
    rounding, one unit in the last place of the pixel values, by value / range: 4e-5 here.)"""
    low, high = percentiles
    spec = PreprocessSpec(size=(40, 70), lower_percentile=low, upper_percentile=high)
    assert _max_difference(image, spec) <= FAST_PATH_TOLERANCE


def test_fast_path_matches_on_monochrome1_three_channels_and_later_frames(
    twins: tuple[DicomImage, DicomImage],
) -> None:
    mono1 = twins[1]
    assert _max_difference(mono1, HALF.model_copy(update={"channels": 3})) <= FAST_PATH_TOLERANCE
    rng = np.random.default_rng(5)
    frames = np.stack([mono1.pixels[0], rng.normal(100.0, 30.0, mono1.pixels[0].shape)])
    multi = dataclasses.replace(mono1, pixels=frames.astype(np.float32))
    assert _max_difference(multi, HALF, frame=1) <= FAST_PATH_TOLERANCE
    assert not torch.equal(preprocess_image(multi, HALF, 1), preprocess_image(multi, HALF, 0))


def test_fast_path_matches_on_a_flat_image(image: DicomImage) -> None:
    """Equal percentiles: MONAI warns and shifts without scaling; so does the fast path."""
    flat = dataclasses.replace(image, pixels=np.full((1, 96, 96), 7.0, dtype=np.float32))
    with pytest.warns(Warning, match="Divide by zero"):
        fast = preprocess_image(flat, HALF)
    with pytest.warns(Warning, match="Divide by zero"):
        reference = reference_preprocess(flat, HALF)
    np.testing.assert_array_equal(fast.numpy(), reference.numpy())


def test_tolerance_is_tight_enough_to_catch_another_resampling(image: DicomImage) -> None:
    """The bound means something: nearest-neighbour sampling instead of area averaging (the
    aliasing the transforms avoid) differs from the reference by far more than it."""
    spec = PreprocessSpec(size=(40, 70))
    reference = reference_preprocess(image, spec)[0].numpy()
    pixels = image.pixels[0]
    rows = np.arange(40) * pixels.shape[0] // 40
    columns = np.arange(70) * pixels.shape[1] // 70
    nearest = np.asarray(pixels[np.ix_(rows, columns)], dtype=np.float32)
    low, high = np.percentile(nearest, [spec.lower_percentile, spec.upper_percentile])
    sampled = np.clip((nearest - low) / (high - low), 0.0, 1.0)
    assert np.abs(sampled - reference).max() > 1000 * FAST_PATH_TOLERANCE


def test_area_resize_reads_the_read_only_pixels_without_changing_them(image: DicomImage) -> None:
    before = image.pixels.copy()
    assert not image.pixels.flags.writeable
    resized = area_resize(image.pixels[0], (48, 48))
    assert resized.dtype == np.float32 and resized.flags.c_contiguous
    np.testing.assert_allclose(resized, _block_mean(image.pixels[0]), rtol=1e-6)
    np.testing.assert_array_equal(image.pixels, before)


# ---- the deterministic path -----------------------------------------------------------------


def test_output_is_float32_in_unit_range_at_the_spec_size(image: DicomImage) -> None:
    tensor = preprocess_image(image, PreprocessSpec(size=(64, 40)))
    assert tensor.shape == (1, 64, 40)
    assert tensor.dtype == torch.float32
    assert type(tensor) is torch.Tensor  # no MONAI MetaTensor leaks to callers
    assert float(tensor.min()) == 0.0 and float(tensor.max()) == 1.0  # clipped, and full range


def test_percentile_mode_maps_the_percentiles_of_the_area_resized_image(
    image: DicomImage,
) -> None:
    resized = _block_mean(np.asarray(image.pixels[0], dtype=np.float64))
    low, high = np.percentile(resized, [HALF.lower_percentile, HALF.upper_percentile])
    expected = np.clip((resized - low) / (high - low), 0.0, 1.0)
    actual = preprocess_image(image, HALF)[0].numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-4)


def test_resizing_averages_areas_rather_than_sampling(image: DicomImage) -> None:
    """At a 3x reduction, interpolation would pick one pixel of each 3 x 3 block; area
    averaging uses all nine, which is what keeps small nodules from aliasing away."""
    spec = PreprocessSpec(size=(32, 32), intensity="window")
    window = image.windows[0]
    resized = _block_mean(np.asarray(image.pixels[0], dtype=np.float64), factor=3)
    expected = np.clip((resized - (window.center - window.width / 2)) / window.width, 0.0, 1.0)
    np.testing.assert_allclose(preprocess_image(image, spec)[0].numpy(), expected, atol=1e-5)


def test_window_mode_uses_the_images_first_window(image: DicomImage) -> None:
    window = image.windows[0]
    resized = _block_mean(np.asarray(image.pixels[0], dtype=np.float64))
    low = window.center - window.width / 2
    expected = np.clip((resized - low) / window.width, 0.0, 1.0)
    actual = preprocess_image(image, HALF.model_copy(update={"intensity": "window"}))[0].numpy()
    np.testing.assert_allclose(actual, expected, atol=1e-5)
    # and it is not just the percentile mapping under another name
    assert np.abs(actual - preprocess_image(image, HALF)[0].numpy()).max() > 0.01


def test_window_mode_without_an_image_falls_back_to_percentiles(image: DicomImage) -> None:
    pixels = np.array(image.pixels[0], dtype=np.float32)[np.newaxis]
    window_spec = HALF.model_copy(update={"intensity": "window"})
    fallback = np.asarray(deterministic_transforms(window_spec)(pixels))
    percentile = np.asarray(deterministic_transforms(HALF)(pixels))
    np.testing.assert_array_equal(fallback, percentile)


def test_three_channels_repeat_the_grey_image(image: DicomImage) -> None:
    grey = preprocess_image(image, HALF)
    rgb = preprocess_image(image, HALF.model_copy(update={"channels": 3}))
    assert rgb.shape == (3, 48, 48)
    for channel in rgb:
        assert torch.equal(channel, grey[0])


@pytest.mark.parametrize(("scale", "offset"), [(3.7, -1000.0), (0.01, 5.0)])
def test_percentile_mode_is_invariant_to_a_linear_rescale(
    image: DicomImage, scale: float, offset: float
) -> None:
    """Vendors differ in gain and offset; the percentile mapping must not see the difference."""
    pixels = np.asarray(image.pixels[0], dtype=np.float64)[np.newaxis]
    pipeline = deterministic_transforms(HALF)
    original = np.asarray(pipeline(pixels.astype(np.float32)))
    rescaled = np.asarray(pipeline((pixels * scale + offset).astype(np.float32)))
    np.testing.assert_allclose(rescaled, original, atol=1e-4)


@pytest.mark.parametrize("intensity", ["percentile", "window"])
def test_monochrome1_and_monochrome2_twins_give_the_same_input(
    twins: tuple[DicomImage, DicomImage], intensity: str
) -> None:
    mono2, mono1 = twins
    assert mono1.info.photometric_interpretation == "MONOCHROME1" and mono1.inverted
    assert mono2.info.photometric_interpretation == "MONOCHROME2" and not mono2.inverted
    spec = HALF.model_copy(update={"intensity": intensity})
    np.testing.assert_allclose(
        preprocess_image(mono1, spec).numpy(), preprocess_image(mono2, spec).numpy(), atol=1e-5
    )


def test_deterministic_path_ignores_augmentation_settings(image: DicomImage) -> None:
    wild = Augmentation(
        probability=1.0, rotate_degrees=40.0, scale_fraction=0.4, noise_std=0.4, gamma_range=(2, 3)
    )
    plain = preprocess_image(image, HALF)
    again = preprocess_image(image, HALF.model_copy(update={"augmentation": wild}))
    assert torch.equal(plain, again)
    assert torch.equal(plain, preprocess_image(image, HALF))  # and repeatable


# ---- augmentation ---------------------------------------------------------------------------


def _augmented(image: DicomImage, spec: PreprocessSpec, seed: int) -> np.ndarray:
    base = torch.from_numpy(np.asarray(preprocess_image(image, spec)))
    augment = augment_transforms(spec)
    augment.set_random_state(seed=seed)
    return np.asarray(augment(base.clone()))


ALWAYS = HALF.model_copy(update={"augmentation": Augmentation(probability=1.0)})


def test_augmentation_is_reproducible_with_the_same_seed(image: DicomImage) -> None:
    np.testing.assert_array_equal(_augmented(image, ALWAYS, 7), _augmented(image, ALWAYS, 7))


def test_augmentation_differs_across_seeds_and_from_the_input(image: DicomImage) -> None:
    base = preprocess_image(image, ALWAYS).numpy()
    first, second = _augmented(image, ALWAYS, 7), _augmented(image, ALWAYS, 8)
    assert first.shape == second.shape == base.shape
    assert np.abs(first - second).mean() > 1e-3
    assert np.abs(first - base).mean() > 1e-3


def test_zero_probability_augmentation_is_the_identity(image: DicomImage) -> None:
    never = HALF.model_copy(update={"augmentation": Augmentation(probability=0.0)})
    np.testing.assert_array_equal(_augmented(image, never, 7), preprocess_image(image, never))


@pytest.mark.parametrize("gamma", [(0.0, 1.2), (-1.0, 0.5), (1.2, 0.8)])
def test_gamma_range_must_be_positive_and_ordered(gamma: tuple[float, float]) -> None:
    """A non-positive gamma makes inf/NaN pixels that training's clamp would silently hide."""
    with pytest.raises(ValidationError, match="gamma_range"):
        Augmentation(gamma_range=gamma)
