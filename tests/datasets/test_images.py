"""PNG and JPEG images become the same `DicomImage` DICOM does, and enter the same preprocessing.

If a PNG were scaled or oriented differently from a DICOM of the same pixels, a model trained on
a public PNG dataset would see different inputs in serving; these tests pin the conversion.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diagnostics.datasets.records import Example
from diagnostics.errors import DatasetError, ImageFileError, InputError
from diagnostics.images import (
    LUMA,
    decode_plain_image,
    plain_image_size,
    read_image,
    read_plain_image,
)
from diagnostics.preprocess import PreprocessSpec, preprocess_image
from diagnostics.train.data import CachedDataset, preprocess_file
from tests.datasets.fixtures import chest, write_dicom, write_image

SPEC = PreprocessSpec(size=(32, 32))


def test_8_bit_png_keeps_its_values_and_says_what_it_is(tmp_path: Path) -> None:
    pixels = chest(1, positive=True)
    image = read_plain_image(write_image(tmp_path / "a.png", pixels))
    assert image.pixels.shape == (1, 64, 64) and image.pixels.dtype == np.float32
    np.testing.assert_array_equal(image.pixels[0], pixels.astype(np.float32))
    assert image.value_range == (0.0, 255.0)
    assert not image.inverted and not image.color_converted and image.windows == ()
    info = image.info
    assert (info.rows, info.columns, info.bits_stored) == (64, 64, 8)
    assert info.modality == "" and info.pixel_spacing_mm is None  # a PNG knows neither
    assert info.transfer_syntax_name == "PNG" and "not DICOM" in info.sop_class_name
    assert not image.pixels.flags.writeable


def test_16_bit_png_uses_the_16_bit_range(tmp_path: Path) -> None:
    pixels = (chest(2).astype(np.uint16) * 200).astype(np.uint16)
    image = read_plain_image(write_image(tmp_path / "a.png", pixels))
    np.testing.assert_array_equal(image.pixels[0], pixels.astype(np.float32))
    assert image.value_range == (0.0, 65535.0) and image.info.bits_stored == 16


def test_rgb_becomes_luminance_and_alpha_is_dropped_with_a_warning(tmp_path: Path) -> None:
    rgb = np.stack([chest(3), chest(4), chest(5)], axis=-1)
    image = read_plain_image(write_image(tmp_path / "rgb.png", rgb))
    np.testing.assert_allclose(image.pixels[0], rgb.astype(np.float32) @ LUMA, atol=1e-3)
    assert image.color_converted and image.info.photometric_interpretation == "RGB"
    rgba = np.concatenate([rgb, np.full((64, 64, 1), 255, np.uint8)], axis=-1)
    with_alpha = read_plain_image(write_image(tmp_path / "rgba.png", rgba))
    np.testing.assert_allclose(with_alpha.pixels, image.pixels)
    assert any("alpha" in w for w in with_alpha.info.warnings)


def test_jpeg_is_read_by_content_not_by_name(tmp_path: Path) -> None:
    pixels = chest(6, positive=True)
    jpeg = write_image(tmp_path / "a.jpg", pixels)
    renamed = Path(shutil.copy(jpeg, tmp_path / "a.dcm"))  # a misleading suffix
    image = read_image(renamed)
    assert image.info.transfer_syntax_name == "JPEG"
    with Image.open(jpeg) as decoded:
        np.testing.assert_array_equal(image.pixels[0], np.asarray(decoded, dtype=np.float32))
    assert np.corrcoef(image.pixels[0].ravel(), pixels.ravel())[0, 1] > 0.9  # lossy, same image


def test_monochrome1_convention_inverts_within_the_range(tmp_path: Path) -> None:
    pixels = chest(7)
    data = write_image(tmp_path / "a.png", pixels).read_bytes()
    image = decode_plain_image(data, photometric="MONOCHROME1")
    np.testing.assert_array_equal(image.pixels[0], 255.0 - pixels)
    assert image.inverted


def test_same_content_gives_the_same_uids(tmp_path: Path) -> None:
    first = write_image(tmp_path / "a.png", chest(8))
    second = Path(shutil.copy(first, tmp_path / "b.png"))
    other = write_image(tmp_path / "c.png", chest(9))
    uids = [read_image(p).uids.sop_instance_uid for p in (first, second, other)]
    assert uids[0] == uids[1] != uids[2]
    assert all(uid.startswith("2.25.") and len(uid) <= 64 for uid in uids)


def test_dicom_still_goes_to_the_dicom_reader(tmp_path: Path) -> None:
    path = write_dicom(tmp_path / "p.dcm", "P1", chest(10))
    image = read_image(path)
    assert image.info.modality == "CR" and image.info.transfer_syntax_name != "PNG"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "cannot be decoded as PNG"),
        (b"\xff\xd8\xff\xe0" + b"garbage" * 10, "cannot be decoded as JPEG"),
    ],
)
def test_damaged_images_are_input_errors_naming_the_file(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "broken.png"
    path.write_bytes(content)
    with pytest.raises(ImageFileError, match=message) as caught:
        read_image(path)
    assert str(path) in str(caught.value) and isinstance(caught.value, InputError)


def test_truncated_png_is_refused(tmp_path: Path) -> None:
    whole = write_image(tmp_path / "a.png", chest(11)).read_bytes()
    with pytest.raises(ImageFileError, match=r"x\.png"):
        decode_plain_image(whole[: len(whole) // 2], "x.png")


def test_missing_file_and_size_from_the_header(tmp_path: Path) -> None:
    with pytest.raises(ImageFileError, match="no such file"):
        read_plain_image(tmp_path / "absent.png")
    path = write_image(tmp_path / "wide.png", np.zeros((40, 70), np.uint8))
    assert plain_image_size(path) == (40, 70)


def test_png_enters_the_dicom_preprocessing(tmp_path: Path) -> None:
    """The cached training input of a PNG equals preprocess_image of its decoded pixels."""
    path = write_image(tmp_path / "a.png", chest(12, positive=True))
    served = preprocess_image(read_image(path), SPEC)
    for cache in (None, tmp_path / "cache"):
        cached = preprocess_file(path, SPEC, cache)
        np.testing.assert_allclose(cached, served[:1].numpy(), atol=2e-3)  # float16 rounding


def test_cache_is_keyed_by_content_for_png_paths(tmp_path: Path) -> None:
    first = write_image(tmp_path / "a.png", chest(13))
    copy = Path(shutil.copy(first, tmp_path / "copy.png"))
    other = write_image(tmp_path / "b.png", chest(14))
    cache = tmp_path / "cache"
    examples = [
        Example(path, f"s{n}", f"p{n}", (n % 2,)) for n, path in enumerate([first, copy, other])
    ]
    dataset = CachedDataset(examples, SPEC, train=True, seed=1, cache_dir=cache)
    assert len(list(cache.glob("*.npy"))) == 2  # the copy reused the first file's entry
    image, labels, boxes = dataset[0]
    assert image.shape == (1, 32, 32) and labels.tolist() == [0.0]
    assert torch.isnan(boxes).all()


def test_unreadable_png_in_training_data_is_a_dataset_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "bad.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(DatasetError) as caught:
        preprocess_file(path, SPEC, tmp_path / "cache")
    assert str(caught.value).count(str(path)) == 1
