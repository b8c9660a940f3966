"""Valid-but-odd source images for the report tests, built by editing real headers.

Each case is a function that writes one source file: the synthetic DX radiograph of
`cases.write_source` with its header edited as real CR/DX headers are found (empty or missing
type 2 and 3 attributes, values that are not valid DICOM, other character sets, other pixel
encodings, sizes and frame counts), or one of pydicom's bundled real images. None is refused by
the reader, so reports must be written for every one of them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pydicom
from pydicom.data import get_testdata_file
from pydicom.dataset import Dataset
from pydicom.uid import (
    MultiFrameGrayscaleWordSecondaryCaptureImageStorage,
    SecondaryCaptureImageStorage,
    generate_uid,
)

from tests.reports.cases import write_source

Edit = Callable[[Dataset], None]

CYRILLIC = "Иванов^Пётр"
UZBEK = "Gʻulomov^Oʻktam"  # noqa: RUF001 (U+02BB: how Uzbek Latin spells o and g with a mark)
LATIN1 = "Müller^Jürgen"


def _delete(*keywords: str) -> Edit:
    def edit(ds: Dataset) -> None:
        for keyword in keywords:
            if keyword in ds:
                delattr(ds, keyword)

    return edit


def _empty(*keywords: str) -> Edit:
    def edit(ds: Dataset) -> None:
        for keyword in keywords:
            setattr(ds, keyword, "")

    return edit


def _raw(keyword: str, value: str) -> Edit:
    """Set a value that pydicom would refuse to assign: real headers carry such values."""

    def edit(ds: Dataset) -> None:
        ds[keyword].value = value

    return edit


def _name(charset: str | list[str], name: str) -> Edit:
    def edit(ds: Dataset) -> None:
        ds.SpecificCharacterSet = charset
        ds.PatientName = name
        ds.ReferringPhysicianName = name

    return edit


def _set_pixels(ds: Dataset, pixels: np.ndarray, bits_stored: int, signed: bool = False) -> None:
    """Replace the pixel data: (rows, cols) or (frames, rows, cols) grey values."""
    bits_allocated = 8 if bits_stored <= 8 else 16
    dtype = {(8, False): np.uint8, (8, True): np.int8, (16, False): np.uint16}.get(
        (bits_allocated, signed), np.int16
    )
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, bits_stored - 1
    ds.PixelRepresentation = int(signed)
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.PixelData = np.ascontiguousarray(pixels.astype(dtype)).tobytes()


def _source_pixels(ds: Dataset) -> np.ndarray:
    """The synthetic image scaled to 0..1."""
    pixels = ds.pixel_array.astype(np.float64)
    return (pixels - pixels.min()) / max(1.0, float(pixels.max() - pixels.min()))


def _bits(bits: int, signed: bool = False) -> Edit:
    def edit(ds: Dataset) -> None:
        top = 2**bits - 1
        values = np.round(_source_pixels(ds) * top)
        offset = 2 ** (bits - 1) if signed else 0
        _set_pixels(ds, values - offset, bits, signed)
        ds.WindowCenter, ds.WindowWidth = top / 2 - offset, top * 0.8
        del ds.WindowCenterWidthExplanation

    return edit


def _resize(rows: int, cols: int) -> Edit:
    def edit(ds: Dataset) -> None:
        source = _source_pixels(ds)
        y = np.arange(rows) * source.shape[0] // rows
        x = np.arange(cols) * source.shape[1] // cols
        _set_pixels(ds, np.round(source[y][:, x] * 4095), 12)

    return edit


def _frames(count: int) -> Edit:
    def edit(ds: Dataset) -> None:
        source = np.round(_source_pixels(ds) * 4095)
        _set_pixels(ds, np.stack([np.roll(source, 8 * k, axis=1) for k in range(count)]), 12)
        ds.SOPClassUID = MultiFrameGrayscaleWordSecondaryCaptureImageStorage
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.Modality, ds.ConversionType = "OT", "WSD"
        ds.FrameIncrementPointer = 0x00181063  # Frame Time
        ds.FrameTime = 100.0

    return edit


def _rgb_film(ds: Dataset) -> None:
    """A digitised film: RGB Secondary Capture without any pixel spacing or window."""
    grey = np.round(_source_pixels(ds) * 255).astype(np.uint8)
    rgb = np.stack([grey, grey, np.clip(grey.astype(int) + 10, 0, 255).astype(np.uint8)], -1)
    for keyword in (
        "ImagerPixelSpacing", "WindowCenter", "WindowWidth", "WindowCenterWidthExplanation",
        "RescaleIntercept", "RescaleSlope", "RescaleType", "PresentationLUTShape",
        "PresentationIntentType", "PixelIntensityRelationship", "PixelIntensityRelationshipSign",
        "ViewCodeSequence", "DetectorType", "PositionerType", "DistanceSourceToDetector", "KVP",
    ):  # fmt: skip
        if keyword in ds:
            delattr(ds, keyword)
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.Modality, ds.ConversionType = "OT", "DF"
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = rgb.tobytes()


def _mono1(ds: Dataset) -> None:
    top = 2**ds.BitsStored - 1
    ds.PixelData = (top - ds.pixel_array).astype(np.uint16).tobytes()
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.WindowCenter = top - float(ds.WindowCenter)
    ds.PresentationLUTShape = "INVERSE"


EDITED: dict[str, list[Edit]] = {
    "orientation-empty": [_empty("PatientOrientation")],
    "orientation-missing": [_delete("PatientOrientation")],
    "orientation-one-value": [_raw("PatientOrientation", "L")],
    "no-spacing": [_delete("ImagerPixelSpacing", "PixelSpacing")],
    "pixel-spacing-only": [
        _delete("ImagerPixelSpacing"),
        lambda ds: setattr(ds, "PixelSpacing", [0.2, 0.2]),
    ],
    "no-view-body-part-laterality": [
        _delete("ViewPosition", "BodyPartExamined", "ImageLaterality", "ViewCodeSequence")
    ],
    "laterality-right": [lambda ds: setattr(ds, "ImageLaterality", "R")],
    "no-study-date-time-accession": [
        _delete("StudyDate", "StudyTime", "AccessionNumber", "StudyID")
    ],
    "empty-patient": [
        _empty("PatientName", "PatientID", "PatientSex", "PatientBirthDate"),
        _delete("ReferringPhysicianName", "PatientAge"),
    ],
    "birth-date-iso": [_raw("PatientBirthDate", "1901-01-01")],
    "bad-dates-and-times": [
        _raw("StudyDate", "20231345"),
        _raw("StudyTime", "256199"),
        _raw("ContentDate", "2023/01/01"),
        _raw("PatientAge", "45"),
    ],
    "over-long-values": [
        _raw("AccessionNumber", "A" * 40),
        _raw("PatientID", "P" * 80),
        _raw("StudyDescription", "D" * 90),
        _raw("PatientName", "N" * 70 + "^Given"),
    ],
    "sex-unknown-code": [_raw("PatientSex", "U")],
    "latin1-name": [_name("ISO_IR 100", LATIN1)],
    "cyrillic-iso-ir-144": [_name("ISO_IR 144", CYRILLIC)],
    "utf8-cyrillic-and-uzbek": [_name("ISO_IR 192", f"{UZBEK}={CYRILLIC}")],
    "utf8-uzbek": [_name("ISO_IR 192", UZBEK)],
    "iso2022-cyrillic": [_name(["ISO 2022 IR 6", "ISO 2022 IR 144"], CYRILLIC)],
    "monochrome1": [_mono1],
    "rgb-film": [_rgb_film],
    "bits-8": [_bits(8)],
    "bits-10": [_bits(10)],
    "bits-14": [_bits(14)],
    "bits-16": [_bits(16)],
    "signed-12": [_bits(12, signed=True)],
    "multi-frame": [_frames(3)],
    "tiny-64": [_resize(64, 64)],
    "large-4300x3500": [_resize(4300, 3500)],
}
"""Edits of the synthetic DX radiograph, by case name."""

REAL = {
    "pydicom-ct": "CT_small.dcm",
    "pydicom-mr": "MR_small.dcm",
    "pydicom-us-rgb": "examples_rgb_color.dcm",
    "pydicom-us-ybr-multiframe": "examples_ybr_color.dcm",
    "pydicom-nm-j2k": "JPEG2000.dcm",
    "pydicom-sc-rgb-2frame": "SC_rgb_rle_2frame.dcm",
}
"""pydicom's bundled real images that the reader accepts, by case name."""

ANALYSED_FRAME = {"multi-frame": 1, "pydicom-us-ybr-multiframe": 12, "pydicom-sc-rgb-2frame": 1}
"""The frame (0-based) the model is said to have analysed, for multi-frame sources."""


def write_case(name: str, folder: Path, index: int) -> Path:
    """Write the source of case `name` into `folder`; `index` keeps studies apart."""
    if name in REAL:
        ds = pydicom.dcmread(get_testdata_file(REAL[name]))
        if ds.get("SOPInstanceUID") is None:
            ds.SOPInstanceUID = generate_uid()
    else:
        ds = pydicom.dcmread(write_source(folder, 100 + index, "MONOCHROME2"))
    path = folder / f"{name}.dcm"
    # Odd values are what is being tested: set and write them as they are, as a modality did.
    with pydicom.config.disable_value_validation():
        for edit in EDITED.get(name, []):
            edit(ds)
        ds.save_as(path, enforce_file_format=False)
    return path


CASES = sorted([*EDITED, *REAL])
