"""Validate a parsed DICOM header into an `InstanceInfo`, before any pixel data is decoded.

Everything that can be decided from the header is decided here: is it an image at all, do the
pixel attributes agree with each other, would decoding it exceed the size limit. That keeps
decompression, the expensive and fragile step, for inputs already known to be sane.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels.decoders.base import get_decoder
from pydicom.uid import UID

from diagnostics.dicom.image import InstanceInfo, InstanceUids
from diagnostics.dicom.sopclass import non_image_kind, sop_class_name
from diagnostics.errors import (
    CorruptDicomError,
    MissingPixelDataError,
    NotAnImageError,
    TooLargeError,
    UnsupportedDicomError,
)

MONOCHROME = ("MONOCHROME1", "MONOCHROME2")
COLOR = ("RGB", "YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "YBR_PARTIAL_420")

_UID = re.compile(r"(?=.*[0-9])[0-9.]+")


@dataclass(frozen=True)
class ReadLimits:
    """Size limits checked before anything is decoded (dimension and deflate bombs, oversized
    uploads). Every limit counts decoded bytes, never compressed ones.

    The defaults keep one instance, and one study, well inside a worker's memory: a chest
    radiograph (about 3000 x 3000 pixels at 16 bits) needs under 60 MB to decode, so they leave
    room for mammograms and small multi-frame images while refusing bombs. The service sets
    them from DIAGNOSTICS_MAX_INSTANCE_BYTES, DIAGNOSTICS_MAX_DECODED_BYTES and
    DIAGNOSTICS_MAX_STUDY_DECODED_BYTES.
    """

    max_file_bytes: int = 256 << 20
    """Largest instance: its file, and for a deflated dataset what it inflates to. Larger
    images could not be decoded within `max_decoded_bytes` anyway (16-bit pixels need three
    times their stored size: the stored pixels and the float32 image)."""
    max_decoded_bytes: int = 512 << 20
    """Per-instance decode budget: the estimated peak memory of decoding one instance (the
    decoder's buffer, the float32 image and, for colour, the float32 samples of its luminance
    conversion; `InstanceInfo.decode_peak_bytes`), checked from the header before decoding."""
    max_study_decoded_bytes: int = 512 << 20
    """Per-study budget: the decoded float32 images of all instances of one study together
    (`InstanceInfo.image_bytes`); intake refuses an instance that would take its study over."""

    def __post_init__(self) -> None:
        for name in ("max_file_bytes", "max_decoded_bytes", "max_study_decoded_bytes"):
            if getattr(self, name) <= 0:
                raise ValueError(f"ReadLimits.{name} must be positive")


def describe_tag(keyword: str) -> str:
    """'Rows (0028,0010)': a keyword with its tag, so messages point at the exact element."""
    from pydicom.datadict import tag_for_keyword

    tag = tag_for_keyword(keyword)
    if tag is None:
        return keyword
    return f"{keyword} ({tag >> 16:04X},{tag & 0xFFFF:04X})"


_TAG_NAMED = re.compile(r"\b([A-Z][A-Za-z0-9]*) \([0-9A-F]{4},[0-9A-F]{4}\)")
_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")


def refusal_category(exc: BaseException) -> str:
    """What a log or audit line says about a refused instance: the error's class and the
    attributes its message names (`describe_tag`), e.g. `CorruptDicomError: BitsStored`.

    Never the message itself: written for the sender, it quotes the offending header value (a
    malformed UID, a Photometric Interpretation), and that can be patient data.
    """
    text = _QUOTED.sub("", str(exc))
    named = list(dict.fromkeys(m.group(1) for m in _TAG_NAMED.finditer(text)))
    return type(exc).__name__ + (f": {', '.join(named)}" if named else "")


def _text(ds: Dataset, keyword: str) -> str | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    if isinstance(value, Sequence) and not isinstance(value, str):
        value = "\\".join(str(v) for v in value)
    text = str(value).strip()
    return text or None


def uid_problem(text: str) -> str:
    """What makes `text` unusable as a UID, or "" when it is usable: its characters and length
    must be a UID's (digits and dots, at most 64 characters, PS3.5 9.1); its component syntax
    (leading zeros, empty components) is left alone, since real archives hold such UIDs and
    nothing here depends on it.

    UIDs end up in URLs, file listings, logs and the SR we send back; one holding a slash,
    a backslash (several values) or a line break would break each of those further on.
    """
    if len(text) > 64:
        return f"{len(text)} characters, more than 64"
    if not _UID.fullmatch(text):
        return "characters other than digits and dots"
    return ""


def _required_uid(ds: Dataset, keyword: str) -> str:
    """The UID, refused with the reason when `uid_problem` finds one."""
    text = _text(ds, keyword)
    if text is None:
        raise CorruptDicomError(f"required attribute {describe_tag(keyword)} is missing or empty")
    text = text.strip("\0 ")
    problem = uid_problem(text)
    if problem:
        raise CorruptDicomError(
            f"{describe_tag(keyword)} is not a valid UID ({problem}): {text[:80]!r}"
        )
    return text


def _int(ds: Dataset, keyword: str, default: int | None = None) -> int:
    value = ds.get(keyword)
    if value is None or value == "":
        if default is None:
            raise CorruptDicomError(f"required attribute {describe_tag(keyword)} is missing")
        return default
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise CorruptDicomError(
            f"{describe_tag(keyword)} must be an integer, found {value!r}"
        ) from None
    return number


def read_uids(ds: Dataset) -> InstanceUids:
    """The identifying UIDs; the SOP class falls back to the file meta when the dataset lacks it."""
    meta = getattr(ds, "file_meta", None)
    sop_class = _text(ds, "SOPClassUID") or (
        _text(meta, "MediaStorageSOPClassUID") if meta is not None else None
    )
    if sop_class is None:
        raise CorruptDicomError(f"required attribute {describe_tag('SOPClassUID')} is missing")
    return InstanceUids(
        patient_id=_text(ds, "PatientID") or "",
        study_instance_uid=_required_uid(ds, "StudyInstanceUID"),
        series_instance_uid=_required_uid(ds, "SeriesInstanceUID"),
        sop_instance_uid=_required_uid(ds, "SOPInstanceUID"),
        sop_class_uid=sop_class,
    )


def _check_is_image(ds: Dataset, uids: InstanceUids) -> None:
    name = sop_class_name(uids.sop_class_uid)
    kind = non_image_kind(uids.sop_class_uid)
    if kind is not None:
        raise NotAnImageError(f"SOP class '{name}' is a {kind}, not an image")
    if "PixelData" not in ds:
        if "FloatPixelData" in ds or "DoubleFloatPixelData" in ds:
            raise UnsupportedDicomError("floating-point pixel data is not supported")
        raise MissingPixelDataError(
            f"SOP class '{name}' is an image class but the instance has no "
            f"{describe_tag('PixelData')}"
        )


def _check_pixel_module(
    ds: Dataset, photometric: str, samples: int, allocated: int, stored: int
) -> None:
    if photometric == "PALETTE COLOR":
        raise UnsupportedDicomError(
            "PALETTE COLOR images are not supported: no radiograph uses one"
        )
    if photometric not in MONOCHROME + COLOR:
        raise UnsupportedDicomError(
            f"{describe_tag('PhotometricInterpretation')} {photometric!r} is not supported"
        )
    expected_samples = 1 if photometric in MONOCHROME else 3
    if samples != expected_samples:
        raise CorruptDicomError(
            f"{describe_tag('SamplesPerPixel')} is {samples} but {photometric} needs "
            f"{expected_samples}"
        )
    if allocated == 1:
        raise UnsupportedDicomError("1-bit (binary) pixel data is not a radiograph")
    if allocated not in (8, 16, 32):
        raise CorruptDicomError(
            f"{describe_tag('BitsAllocated')} must be 8, 16 or 32, not {allocated}"
        )
    if not 1 <= stored <= allocated:
        raise CorruptDicomError(
            f"{describe_tag('BitsStored')} is {stored} but must be between 1 and "
            f"Bits Allocated ({allocated})"
        )
    high_bit = _int(ds, "HighBit")
    if high_bit != stored - 1:
        raise CorruptDicomError(
            f"{describe_tag('HighBit')} is {high_bit} but must be Bits Stored - 1 ({stored - 1})"
        )
    representation = _int(ds, "PixelRepresentation")
    if representation not in (0, 1):
        raise CorruptDicomError(
            f"{describe_tag('PixelRepresentation')} must be 0 or 1, not {representation}"
        )


def _check_size(info: InstanceInfo, limits: ReadLimits) -> None:
    decoded = info.decode_peak_bytes
    if decoded > limits.max_decoded_bytes:
        raise TooLargeError(
            f"{info.rows} x {info.columns} pixels x {info.frames} frame(s) x "
            f"{info.samples_per_pixel} sample(s) would decode into about {decoded:,} bytes, over "
            f"the per-instance budget of {limits.max_decoded_bytes:,}"
        )


def _spacing(ds: Dataset, warnings: list[str]) -> tuple[tuple[float, float] | None, str | None]:
    candidates: list[tuple[str, Any]] = [
        ("PixelSpacing", ds.get("PixelSpacing")),
        ("ImagerPixelSpacing", ds.get("ImagerPixelSpacing")),
    ]
    shared = ds.get("SharedFunctionalGroupsSequence")
    if shared:
        measures = shared[0].get("PixelMeasuresSequence")
        if measures:
            candidates.append(("PixelMeasuresSequence", measures[0].get("PixelSpacing")))
    for source, value in candidates:
        if value is None or value == "":
            continue
        try:
            row, col = (float(v) for v in value)
        except (TypeError, ValueError):
            warnings.append(f"{source} {value!r} is not two numbers; ignored")
            continue
        if not (math.isfinite(row) and math.isfinite(col) and row > 0 and col > 0):
            warnings.append(f"{source} {value!r} is not positive; ignored")
            continue
        return (row, col), source
    return None, None


def _transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    uid = _text(meta, "TransferSyntaxUID") if meta is not None else None
    if uid is None:
        raise CorruptDicomError(
            f"the transfer syntax is unknown: {describe_tag('TransferSyntaxUID')} is missing"
        )
    syntax = UID(uid)
    if not syntax.is_transfer_syntax:
        raise UnsupportedDicomError(f"transfer syntax {uid!r} is not one this library knows")
    return syntax


def rescale_values(ds: Dataset) -> tuple[float, float]:
    """Rescale Slope and Intercept (top level or shared functional groups), validated."""
    source = ds
    if "RescaleSlope" not in ds and "SharedFunctionalGroupsSequence" in ds:
        groups = ds.SharedFunctionalGroupsSequence[0]
        transforms = groups.get("PixelValueTransformationSequence")
        if transforms:
            source = transforms[0]
    try:
        slope = float(source.get("RescaleSlope", 1.0))
        intercept = float(source.get("RescaleIntercept", 0.0))
    except (TypeError, ValueError):
        raise CorruptDicomError(
            f"{describe_tag('RescaleSlope')} / {describe_tag('RescaleIntercept')} are not numbers"
        ) from None
    if not (math.isfinite(slope) and math.isfinite(intercept)) or slope == 0.0:
        raise CorruptDicomError(
            f"{describe_tag('RescaleSlope')} {slope} / intercept {intercept} is not usable"
        )
    return slope, intercept


def _check_decodable(syntax: UID) -> None:
    try:
        decoder = get_decoder(syntax)
    except NotImplementedError:
        raise UnsupportedDicomError(
            f"pixel data in transfer syntax '{syntax.name}' cannot be decoded here"
        ) from None
    if not decoder.is_available:
        raise UnsupportedDicomError(f"no decoder for transfer syntax '{syntax.name}' is installed")


def parse_header(ds: Dataset, limits: ReadLimits, warnings: list[str]) -> InstanceInfo:
    """Turn a parsed dataset into a validated `InstanceInfo`, or raise a typed `InputError`."""
    uids = read_uids(ds)
    _check_is_image(ds, uids)
    syntax = _transfer_syntax(ds)
    _check_decodable(syntax)
    photometric = _text(ds, "PhotometricInterpretation")
    if photometric is None:
        raise CorruptDicomError(f"{describe_tag('PhotometricInterpretation')} is missing")
    samples = _int(ds, "SamplesPerPixel")
    allocated = _int(ds, "BitsAllocated")
    stored = _int(ds, "BitsStored")
    _check_pixel_module(ds, photometric, samples, allocated, stored)
    rows, columns = _int(ds, "Rows"), _int(ds, "Columns")
    frames = _int(ds, "NumberOfFrames", default=1)
    for keyword, number in (("Rows", rows), ("Columns", columns), ("NumberOfFrames", frames)):
        if number < 1:
            raise CorruptDicomError(f"{describe_tag(keyword)} must be at least 1, not {number}")
    if "ModalityLUTSequence" not in ds:
        rescale_values(ds)
    spacing, spacing_source = _spacing(ds, warnings)
    header = Dataset()
    header.update({elem.tag: elem for elem in ds if elem.keyword != "PixelData"})
    header.file_meta = getattr(ds, "file_meta", FileMetaDataset())
    info = InstanceInfo(
        uids=uids,
        sop_class_name=sop_class_name(uids.sop_class_uid),
        transfer_syntax_uid=str(syntax),
        transfer_syntax_name=syntax.name,
        modality=_text(ds, "Modality") or "",
        body_part=_text(ds, "BodyPartExamined"),
        view_position=_text(ds, "ViewPosition"),
        rows=rows,
        columns=columns,
        frames=frames,
        samples_per_pixel=samples,
        photometric_interpretation=photometric,
        bits_allocated=allocated,
        bits_stored=stored,
        pixel_signed=_int(ds, "PixelRepresentation") == 1,
        pixel_spacing_mm=spacing,
        spacing_source=spacing_source,
        warnings=tuple(warnings),
        dataset=header,
    )
    _check_size(info, limits)
    return info
