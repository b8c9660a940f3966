"""Every valid corpus case decodes to the pixels of its uncompressed twin, in modality units.

Lossless syntaxes must match exactly; lossy ones within the tolerance their case declares, and
they must actually differ somewhere, or the case would not be exercising a lossy decoder at all.
Further tests pin down the conversions the reader promises: MONOCHROME1 inversion, colour to
luminance, rescale into modality units, and lenient reading of bare datasets.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest

from diagnostics.dicom import DicomImage, read_info, read_instance, read_stream
from tests.dicom.corpus import (
    MAX_12BIT,
    SIGNED_INTERCEPT,
    SIGNED_SLOPE,
    SUPPORTED_SYNTAXES,
    VALID_NAMES,
    Corpus,
    ValidCase,
    uid,
)


def _errors(image: DicomImage, case: ValidCase) -> np.ndarray:
    assert image.pixels.shape == case.expected.shape
    return np.abs(image.pixels.astype(np.float64) - case.expected.astype(np.float64))


@pytest.mark.parametrize("name", VALID_NAMES)
def test_decodes_to_the_pixels_of_its_uncompressed_twin(corpus: Corpus, name: str) -> None:
    case = corpus.valid[name]
    image = read_instance(case.path)
    errors = _errors(image, case)
    assert image.info.transfer_syntax_uid == case.syntax
    assert image.pixels.dtype == np.float32
    assert errors.max() <= case.max_error, f"{name}: worst pixel off by {errors.max()}"
    assert errors.mean() <= case.mean_error, f"{name}: mean error {errors.mean()}"


def test_lossy_cases_are_really_lossy(corpus: Corpus) -> None:
    """A 'lossy' file that decodes exactly was encoded losslessly: its tolerance tests nothing."""
    lossy = {name: case for name, case in corpus.valid.items() if case.lossy}
    assert len(lossy) >= 7
    exact = [
        name for name, case in lossy.items() if _errors(read_instance(case.path), case).max() == 0
    ]
    assert not exact, f"lossy syntax but lossless content: {exact}"


def test_corpus_covers_every_supported_transfer_syntax(corpus: Corpus) -> None:
    covered = {case.syntax for case in corpus.valid.values()}
    missing = sorted(syntax.name for syntax in SUPPORTED_SYNTAXES - covered)
    assert not missing, f"no corpus case for {missing}"


def test_corpus_uses_every_encoder_family(corpus: Corpus) -> None:
    """pydicom's encoders and both Debian toolkits each produce part of the corpus."""
    names = " ".join(corpus.valid)
    assert "-dcmtk" in names and "-gdcm" in names
    assert any(
        not n.endswith(("-dcmtk", "-gdcm")) and corpus.valid[n].syntax.is_compressed
        for n in corpus.valid
    )


@pytest.mark.parametrize("name", VALID_NAMES)
def test_header_only_read_agrees_with_the_full_read(corpus: Corpus, name: str) -> None:
    """read_info must accept what read_instance accepts, without touching the pixel data."""
    path = corpus.valid[name].path
    assert read_info(path) == read_instance(path).info


def test_bytes_stream_and_path_give_the_same_image(corpus: Corpus) -> None:
    path = corpus.valid["jpeg-ls-lossless"].path
    from_path = read_instance(path)
    from_bytes = read_instance(path.read_bytes())
    from_stream = read_stream(io.BytesIO(path.read_bytes()))
    for other in (from_bytes, from_stream):
        assert other.info == from_path.info
        np.testing.assert_array_equal(other.pixels, from_path.pixels)


def test_pixels_are_read_only(corpus: Corpus) -> None:
    image = read_instance(corpus.valid["explicit-vr-little-endian"].path)
    with pytest.raises(ValueError, match="read-only"):
        image.pixels[0, 0, 0] = 0.0


def test_monochrome1_is_inverted_with_its_window(corpus: Corpus) -> None:
    """Higher means denser after reading, and the VOI window follows the inversion."""
    twin = read_instance(corpus.valid["explicit-vr-little-endian"].path)
    for name in ("monochrome1", "monochrome1-jpeg-ls"):
        image = read_instance(corpus.valid[name].path)
        assert image.inverted and not twin.inverted
        assert image.value_range == (0.0, float(MAX_12BIT))
        assert [w.center for w in image.windows] == pytest.approx([w.center for w in twin.windows])
        assert [w.width for w in image.windows] == pytest.approx([w.width for w in twin.windows])


@pytest.mark.parametrize(
    "name", ["rgb-native", "rgb-native-planar", "ybr-full-422-jpeg-baseline-dcmtk"]
)
def test_colour_is_converted_to_luminance(corpus: Corpus, name: str) -> None:
    image = read_instance(corpus.valid[name].path)
    assert image.color_converted
    assert image.pixels.ndim == 3
    assert image.info.samples_per_pixel == 3


def test_grey_images_are_not_colour_converted(corpus: Corpus) -> None:
    image = read_instance(corpus.valid["jpeg-baseline-8bit-dcmtk"].path)
    assert not image.color_converted


def test_signed_pixels_come_out_in_modality_units(corpus: Corpus) -> None:
    image = read_instance(corpus.valid["signed-16bit-rescaled"].path)
    assert image.info.pixel_signed
    low = -32768 * SIGNED_SLOPE + SIGNED_INTERCEPT
    high = 32767 * SIGNED_SLOPE + SIGNED_INTERCEPT
    assert image.value_range == (low, high)
    assert image.pixels.min() < 0 < image.pixels.max()


def test_multiframe_keeps_its_frames_apart(corpus: Corpus) -> None:
    image = read_instance(corpus.valid["multiframe-rle"].path)
    assert image.info.frames == 3
    assert not np.array_equal(image.pixels[0], image.pixels[1])


@pytest.mark.parametrize("name", ["bare-dataset-implicit", "no-preamble-with-file-meta"])
def test_a_dataset_without_preamble_is_read_with_a_warning(corpus: Corpus, name: str) -> None:
    info = read_info(corpus.valid[name].path)
    assert any("no Part 10 preamble" in warning for warning in info.warnings)


def test_plain_files_carry_no_warnings(corpus: Corpus) -> None:
    assert read_info(corpus.valid["explicit-vr-little-endian"].path).warnings == ()


def test_header_facts_come_from_the_file(corpus: Corpus) -> None:
    info = read_info(corpus.valid["explicit-vr-big-endian-dcmtk"].path)
    assert info.uids.study_instance_uid == uid("study-1")
    assert info.uids.sop_instance_uid == uid("instance-1")
    assert info.modality == "DX"
    assert info.view_position == "PA"
    assert info.pixel_spacing_mm == (0.5, 0.5)
    assert info.spacing_source == "ImagerPixelSpacing"
    assert (info.rows, info.columns, info.bits_stored) == (64, 80, 12)


def test_summary_is_json_ready(corpus: Corpus) -> None:
    summary = read_instance(corpus.valid["rle"].path).summary()
    decoded = json.loads(json.dumps(summary))
    assert decoded["sop_instance_uid"] == uid("instance-1")
    assert decoded["transfer_syntax"]["name"] == "RLE Lossless"
    assert decoded["pixel_stats"]["max"] > decoded["pixel_stats"]["min"]
