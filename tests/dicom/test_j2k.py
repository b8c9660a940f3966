"""JPEG 2000 decoded at a reduced resolution level: only where it is safe, close to the full
decode once preprocessed, and never in front of the checks the full decode makes."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000, JPEG2000Lossless

import diagnostics.dicom.j2k as j2k
from diagnostics.dicom.image import DicomImage
from diagnostics.dicom.j2k import parse_codestream, reduction_for
from diagnostics.dicom.pixels import decode_image
from diagnostics.dicom.reader import ParsedInstance, parse_instance
from diagnostics.errors import CorruptDicomError
from diagnostics.preprocess import PreprocessSpec, preprocess_image
from diagnostics.synth.dx import build_dx
from diagnostics.synth.study import SynthConfig, make_study
from tests.dicom.corpus import codestreams, dx_dataset, phantom

SPEC = PreprocessSpec(size=(64, 64))
SYNTH = SynthConfig(rows=256, columns=240, spacing_mm=1.6, compressed_fraction=0.0)

MEAN_BOUND = 0.01
P99_BOUND = 0.08
MAX_BOUND = 0.15
"""Reduced vs full decode, after preprocessing, on the [0, 1] scale. The reduced level is the
codec's wavelet low-pass rather than a box mean, so the two differ at sharp edges (collimation
borders, burnt-in markers) and hardly elsewhere. Measured on these 256 x 240 studies at 64 x 64
(one level, the worst case: little averaging left after it): mean <= 0.005, 99th percentile
<= 0.046, max <= 0.076. For the bundled 320 x 320 model (`benchmarks/j2k_reduce_accuracy.py`,
synthetic test-seed studies): 120 at 1024 x 1024 (one level) mean 0.0008, 99th percentile
0.008, max 0.08; 40 at 2048 x 2048 (two levels) mean 0.0017, 99th percentile 0.011, max 0.11;
AUROC unchanged but for nodule at 1024 (0.9342 full, 0.9339 reduced)."""


def _study(index: int, syntax: pydicom.uid.UID = JPEG2000Lossless) -> ParsedInstance:
    _, pixels, patient, acquisition = make_study(11, index, index, SYNTH)
    acquisition = dataclasses.replace(acquisition, transfer_syntax=syntax)
    buffer = io.BytesIO()
    build_dx(pixels, patient, acquisition).save_as(buffer, enforce_file_format=True)
    return parse_instance(buffer.getvalue())


def _decoded(parsed: ParsedInstance, min_size: tuple[int, int] | None) -> DicomImage:
    return decode_image(parsed.dataset, parsed.info, min_size)


@pytest.fixture(scope="module")
def study() -> ParsedInstance:
    return _study(0)


def test_a_large_image_is_decoded_at_the_smallest_level_still_big_enough(
    study: ParsedInstance,
) -> None:
    reduced = _decoded(study, SPEC.size)
    # 256 x 240 -> 128 x 120 -> 64 x 60: 60 < 64, so one level, not two
    assert reduced.reduction == 1
    assert reduced.pixels.shape == (1, 128, 120)
    assert reduced.pixels.dtype == np.float32 and not reduced.pixels.flags.writeable
    full = _decoded(study, None)
    assert full.reduction == 0 and full.pixels.shape == (1, 256, 240)
    assert reduced.value_range == full.value_range and reduced.windows == full.windows
    assert reduced.inverted == full.inverted


@pytest.mark.parametrize("index", range(4))
def test_reduced_decode_preprocesses_close_to_the_full_decode(index: int) -> None:
    parsed = _study(index)
    full = preprocess_image(_decoded(parsed, None), SPEC).numpy()
    reduced_image = _decoded(parsed, SPEC.size)
    assert reduced_image.reduction == 1
    difference = np.abs(preprocess_image(reduced_image, SPEC).numpy() - full)
    assert difference.mean() <= MEAN_BOUND
    assert np.percentile(difference, 99) <= P99_BOUND
    assert difference.max() <= MAX_BOUND


def test_the_level_is_resized_where_the_full_image_lies(study: ParsedInstance) -> None:
    """Resized as if it were a full image, the level lands half a pixel off and fails the
    bounds: the footprint weighting in `area_resize` is what keeps it within them."""
    full = preprocess_image(_decoded(study, None), SPEC).numpy()
    reduced = _decoded(study, SPEC.size)
    naive = dataclasses.replace(
        reduced,
        reduction=0,
        info=dataclasses.replace(reduced.info, rows=128, columns=120),
    )
    difference = np.abs(preprocess_image(naive, SPEC).numpy() - full)
    assert difference.max() > MAX_BOUND


def test_the_bounds_would_catch_a_wrong_level(study: ParsedInstance) -> None:
    """The reduced pixels are the image: a transposed or wrongly scaled level fails the bounds."""
    full = preprocess_image(_decoded(study, None), SPEC).numpy()
    reduced = _decoded(study, SPEC.size)
    flipped = dataclasses.replace(reduced, pixels=np.ascontiguousarray(reduced.pixels[:, ::-1]))
    difference = np.abs(preprocess_image(flipped, SPEC).numpy() - full)
    assert difference.mean() > MEAN_BOUND


def test_a_small_lossless_image_is_decoded_in_full(study: ParsedInstance) -> None:
    """Under twice the model's size there is no level to use: exactly the full decode."""
    for min_size in [(129, 64), (64, 121), (256, 240)]:
        image = _decoded(study, min_size)
        assert image.reduction == 0
        np.testing.assert_array_equal(image.pixels, _decoded(study, None).pixels)


def test_lossless_levels_hold_the_stored_values_scale(study: ParsedInstance) -> None:
    """Pillow widens 12-bit samples to 16 bits; shifted back, a level averages stored values."""
    full = _decoded(study, None).pixels[0]
    reduced = _decoded(study, SPEC.size).pixels[0]
    block = full.reshape(128, 2, 120, 2).mean(axis=(1, 3))
    assert abs(float(reduced.mean()) - float(block.mean())) < 0.01 * float(block.mean())


def test_lossy_jpeg_2000_is_reduced_too() -> None:
    ds = dx_dataset(np.kron(phantom(), np.ones((4, 4), dtype=np.uint16)))
    ds.compress(JPEG2000, j2k_psnr=[70.0], generate_instance_uid=False)
    parsed = _parsed(ds)
    reduced = _decoded(parsed, (64, 64))
    assert reduced.reduction >= 1
    full = preprocess_image(_decoded(parsed, None), SPEC).numpy()
    assert np.abs(preprocess_image(reduced, SPEC).numpy() - full).mean() <= MEAN_BOUND


def _parsed(ds: Dataset) -> ParsedInstance:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return parse_instance(buffer.getvalue())


def test_a_decoder_refusal_falls_back_to_the_full_decode(
    study: ParsedInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*_: object, **__: object) -> None:
        raise OSError("broken codestream")

    monkeypatch.setattr(j2k.Image, "open", refuse)
    image = _decoded(study, SPEC.size)
    assert image.reduction == 0
    np.testing.assert_array_equal(image.pixels, _decoded(study, None).pixels)


def test_a_decoder_warning_falls_back_to_the_full_decode(
    study: ParsedInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = j2k.Image.open

    def warn(*args: object, **kwargs: object) -> object:
        import warnings

        warnings.warn("something odd", UserWarning, stacklevel=1)
        return original(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(j2k.Image, "open", warn)
    assert _decoded(study, SPEC.size).reduction == 0


def test_checks_run_before_the_reduced_decode(study: ParsedInstance) -> None:
    """A codestream without its end marker is refused as before, reduced decode or not."""
    ds = study.dataset
    frame = codestreams(ds)[0]
    cut = pydicom.dcmread(io.BytesIO(_bytes(ds)))
    cut.PixelData = encapsulate([frame[: len(frame) // 2]])
    with pytest.raises(CorruptDicomError, match="end-of-image marker"):
        decode_image(cut, study.info, SPEC.size)


def _bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def test_a_header_that_disagrees_with_the_codestream_gets_the_full_decode_and_its_error(
    study: ParsedInstance,
) -> None:
    """Bits Stored 10 against a 12-bit codestream: not reduced, so the full decode's own
    handling applies, whatever it is, exactly as without `min_size`."""
    info = dataclasses.replace(study.info, bits_stored=10)
    ds = pydicom.dcmread(io.BytesIO(_bytes(study.dataset)))
    ds.BitsStored, ds.HighBit = 10, 9

    def outcome(min_size: tuple[int, int] | None) -> object:
        try:
            image = decode_image(ds, info, min_size)
        except CorruptDicomError as exc:
            return str(exc)
        return (image.reduction, image.pixels.tobytes())

    assert outcome(SPEC.size) == outcome(None)


def test_parse_codestream_reads_size_precision_and_levels(study: ParsedInstance) -> None:
    stream = parse_codestream(codestreams(study.dataset)[0])
    assert stream is not None
    assert (stream.rows, stream.columns, stream.components) == (256, 240, 1)
    assert (stream.precision, stream.signed, stream.offset) == (12, False, (0, 0))
    assert stream.levels is not None and stream.levels >= 2


@pytest.mark.parametrize("data", [b"", b"\xff\x4f", b"\x00\x00\x00\x0cjP  ", b"\xff\x4f\xff\x51"])
def test_parse_codestream_refuses_what_is_not_a_codestream(data: bytes) -> None:
    assert parse_codestream(data) is None


@pytest.mark.parametrize(
    ("shape", "min_size", "levels", "expected"),
    [
        ((2048, 2048), (320, 320), 5, 2),  # 512 >= 320 > 256
        ((2048, 2048), (320, 320), 1, 1),  # capped by the codestream's levels
        ((639, 2048), (320, 320), 5, 1),  # ceil(639 / 2) = 320 >= 320
        ((638, 2048), (320, 320), 5, 0),  # 319 < 320
        ((512, 512), (320, 320), 5, 0),
        ((641, 641), (320, 320), 5, 1),  # ceil(641 / 2) = 321
        ((3000, 2500), (256, 256), 5, 3),
    ],
)
def test_reduction_for(
    shape: tuple[int, int], min_size: tuple[int, int], levels: int, expected: int
) -> None:
    assert reduction_for(*shape, min_size, levels) == expected
