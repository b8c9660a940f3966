"""Decode validated pixel data into modality units where a higher value means denser.

pydicom only warns about several pixel-data inconsistencies (too few or too many bytes for the
declared frames, a codec stream that disagrees with the header). Here each of those is checked
explicitly before decoding, and any warning raised while decoding is an error: a radiograph we
would have to guess about is not one we may analyse.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames, parse_basic_offsets, parse_fragments
from pydicom.pixels.decoders.base import get_decoder
from pydicom.pixels.processing import apply_modality_lut
from pydicom.uid import (
    UID,
    JPEG2000TransferSyntaxes,
    JPEGLSTransferSyntaxes,
    JPEGTransferSyntaxes,
    RLELossless,
)

from diagnostics.dicom.header import MONOCHROME, describe_tag, rescale_values
from diagnostics.dicom.image import DicomImage, InstanceInfo, Window
from diagnostics.dicom.j2k import decode_reduced
from diagnostics.dicom.warn import recorded_warnings
from diagnostics.errors import CorruptDicomError, UnsupportedDicomError

# Half the float32 range: rescaled values and the MONOCHROME1 inversion (low + high - x) both fit.
_FLOAT32_HALF = float(np.finfo(np.float32).max) / 2

# ITU-R BT.601 luma weights: the luminance of an RGB image, as a grey-scale radiograph would show.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def check_native_length(info: InstanceInfo, actual: int) -> None:
    """Native (uncompressed) pixel data of `actual` bytes must be what the header declares."""
    per_frame_samples = info.rows * info.columns * info.samples_per_pixel
    if info.photometric_interpretation == "YBR_FULL_422":
        per_frame_samples = info.rows * info.columns * 2
    frame_bytes = per_frame_samples * (info.bits_allocated // 8)
    expected = frame_bytes * info.frames
    if actual < expected:
        held = actual // frame_bytes
        raise CorruptDicomError(
            f"pixel data is truncated: {actual:,} bytes for {info.frames} frame(s) of "
            f"{info.rows} x {info.columns} that need {expected:,} (enough for {held} frame(s))"
        )
    if actual > expected + (expected % 2):
        if actual % frame_bytes in (0, 1):
            raise CorruptDicomError(
                f"{describe_tag('NumberOfFrames')} says {info.frames} but the pixel data holds "
                f"{actual // frame_bytes} frames"
            )
        raise CorruptDicomError(
            f"pixel data holds {actual - expected:,} bytes more than {info.frames} frame(s) of "
            f"{info.rows} x {info.columns} need"
        )


# Each frame of these syntaxes ends with the end-of-image (JPEG, JPEG-LS) or end-of-codestream
# (JPEG 2000) marker FFD9. The JPEG and JPEG-LS decoders return invented pixels for a codestream
# cut short instead of failing, so a missing end marker is refused before decoding.
_MARKER_TERMINATED = frozenset(
    (*JPEGTransferSyntaxes, *JPEGLSTransferSyntaxes, *JPEG2000TransferSyntaxes)
)
_END_MARKER = b"\xff\xd9"


def _check_end_markers(data: bytes, info: InstanceInfo) -> None:
    frames = generate_frames(data, number_of_frames=info.frames)
    for number, frame in enumerate(frames, start=1):
        if frame.rstrip(b"\0")[-2:] != _END_MARKER:
            raise CorruptDicomError(
                f"the codestream of frame {number} is truncated: it does not end with the "
                "end-of-image marker FFD9"
            )


def _check_encapsulated(ds: Dataset, info: InstanceInfo) -> None:
    data = ds.PixelData
    try:
        offsets = parse_basic_offsets(data)
        fragments, _ = parse_fragments(data)
    except (ValueError, TypeError, EOFError) as exc:
        raise CorruptDicomError(f"encapsulated pixel data is malformed: {exc}") from None
    if fragments == 0:
        raise CorruptDicomError("encapsulated pixel data holds no fragments")
    extended = ds.get("ExtendedOffsetTable")
    if extended is not None and len(extended) // 8 != info.frames:
        raise CorruptDicomError(
            f"{describe_tag('NumberOfFrames')} says {info.frames} but the extended offset table "
            f"lists {len(extended) // 8} frames"
        )
    if offsets and len(offsets) != info.frames:
        raise CorruptDicomError(
            f"{describe_tag('NumberOfFrames')} says {info.frames} but the basic offset table "
            f"lists {len(offsets)} frames"
        )
    if fragments < info.frames:
        raise CorruptDicomError(
            f"{describe_tag('NumberOfFrames')} says {info.frames} but the encapsulated pixel "
            f"data holds only {fragments} fragment(s)"
        )
    if info.transfer_syntax_uid in _MARKER_TERMINATED:
        _check_end_markers(data, info)


def _decode(
    ds: Dataset, info: InstanceInfo, min_size: tuple[int, int] | None
) -> tuple[np.ndarray, str, int]:
    """Stored values, the photometric interpretation they came out in, and the reduce factor
    (0: full resolution)."""
    syntax = UID(info.transfer_syntax_uid)
    decoder = get_decoder(syntax)  # available: checked with the header
    if syntax.is_encapsulated:
        _check_encapsulated(ds, info)
        if min_size is not None:
            reduced = decode_reduced(ds, info, min_size)
            if reduced is not None:
                return reduced[0], info.photometric_interpretation, reduced[1]
    else:
        check_native_length(info, len(ds.PixelData))
    with recorded_warnings() as caught:
        # A view avoids one copy (rescaling makes the float32 one), but only where pydicom
        # need not mask unused high bits.
        view_only = info.bits_stored == info.bits_allocated
        # RLE through pydicom's own decoder: pylibjpeg-rle (Rust) panics on some damaged
        # segments (a BaseException), and the Rust runtime prints a backtrace to stderr.
        plugin = "pydicom" if syntax == RLELossless else ""
        # pydicom annotates **kwargs as DecodeOptions itself rather than Unpack[DecodeOptions].
        options: dict[str, Any] = {"view_only": view_only, "decoding_plugin": plugin}
        array, properties = decoder.as_array(ds, raw=False, **options)
    if caught:
        raise CorruptDicomError(f"pixel data disagrees with the header: {caught[0].message}")
    photometric = properties.get("photometric_interpretation", info.photometric_interpretation)
    return array, str(photometric), 0


def _to_frames(array: np.ndarray, info: InstanceInfo, reduction: int) -> np.ndarray:
    """Reshape to (frames, rows, columns[, samples]); check the decoder gave what was declared
    (at 1/2**reduction of the size for a reduced JPEG 2000 decode, which is already framed)."""
    color = info.samples_per_pixel == 3
    if info.frames == 1 and not reduction:
        array = array[np.newaxis]
    step = 2**reduction
    rows, columns = -(-info.rows // step), -(-info.columns // step)
    expected = (info.frames, rows, columns) + ((3,) if color else ())
    if array.shape != expected:
        raise CorruptDicomError(
            f"decoded pixel data has shape {array.shape}, the header declares {expected}"
        )
    return array


def _rescale(array: np.ndarray, ds: Dataset, owned: bool) -> np.ndarray:
    """Apply Rescale Slope/Intercept (or a Modality LUT) into float32 modality units.

    `owned`: `array` is a float32 buffer made here that may be rescaled in place, saving a
    second full-size copy (the decode budget counts one float32 image, not two).
    """
    if "ModalityLUTSequence" in ds:
        return np.asarray(apply_modality_lut(array, ds), dtype=np.float32)
    slope, intercept = rescale_values(ds)
    out = array.astype(np.float32, copy=not owned)
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)
    return out


def _value_range(info: InstanceInfo, ds: Dataset) -> tuple[float, float]:
    if info.pixel_signed:
        low, high = -(2 ** (info.bits_stored - 1)), 2 ** (info.bits_stored - 1) - 1
    else:
        low, high = 0, 2**info.bits_stored - 1
    if "ModalityLUTSequence" in ds:
        return float(low), float(high)
    slope, intercept = rescale_values(ds)
    ends = sorted((low * slope + intercept, high * slope + intercept))
    if max(abs(ends[0]), abs(ends[1])) > _FLOAT32_HALF:
        raise CorruptDicomError(
            f"{describe_tag('RescaleSlope')} {slope} / intercept {intercept} map the stored "
            "values beyond what float32 pixels can hold"
        )
    return float(ends[0]), float(ends[1])


def _as_list(value: Any) -> list[Any]:
    """DICOM multi-valued elements come back as MultiValue; single values as scalars."""
    if isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        return [value]
    return list(value)


def _windows(ds: Dataset, flip: float | None) -> tuple[Window, ...]:
    centers, widths = ds.get("WindowCenter"), ds.get("WindowWidth")
    if centers is None or widths is None:
        return ()
    explanations = ds.get("WindowCenterWidthExplanation")
    explanation_list = _as_list(explanations) if explanations is not None else []
    windows = []
    for index, (center, width) in enumerate(zip(_as_list(centers), _as_list(widths), strict=False)):
        try:
            c, w = float(center), float(width)
        except (TypeError, ValueError):
            continue
        if not (np.isfinite(c) and np.isfinite(w)) or w <= 0:
            continue
        label = str(explanation_list[index]) if index < len(explanation_list) else None
        windows.append(
            Window(center=flip - c if flip is not None else c, width=w, explanation=label)
        )
    return tuple(windows)


def decode_image(
    ds: Dataset, info: InstanceInfo, min_size: tuple[int, int] | None = None
) -> DicomImage:
    """Decode, rescale and orient the pixels of a dataset whose header `info` describes.

    `min_size` (height, width), for a consumer that needs no more (the model's input): a
    JPEG 2000 image at least twice that size is decoded only to the smallest resolution level
    still at least that big (`j2k.decode_reduced`; `DicomImage.reduction` says by how much).
    Anything else, and any refusal of the reduced decode, is decoded in full.
    """
    array, decoded_photometric, reduction = _decode(ds, info, min_size)
    array = _to_frames(array, info, reduction)
    color_converted = array.ndim == 4
    if color_converted:
        if decoded_photometric not in ("RGB", "YBR_RCT", "YBR_ICT"):
            raise UnsupportedDicomError(
                f"colour data decoded as {decoded_photometric} could not be converted to RGB"
            )
        array = array.astype(np.float32) @ _LUMA
    low, high = _value_range(info, ds)  # first: it refuses a rescale that would overflow
    pixels = _rescale(array, ds, owned=color_converted)
    del array  # the decoder's buffer: freed before anything else is allocated
    inverted = info.photometric_interpretation == "MONOCHROME1"
    if inverted:
        np.subtract(np.float32(low + high), pixels, out=pixels)  # in place: no second copy
    pixels.setflags(write=False)
    voi = ds.get("VOILUTFunction")
    return DicomImage(
        info=info,
        pixels=pixels,
        value_range=(low, high),
        inverted=inverted,
        color_converted=color_converted,
        windows=_windows(ds, low + high if inverted else None),
        voi_lut_function=str(voi) if voi else None,
        reduction=reduction,
    )


__all__ = ["MONOCHROME", "decode_image"]
