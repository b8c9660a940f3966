"""JPEG 2000 decoded only to the resolution the model needs (issue #17).

A JPEG 2000 codestream holds its image as a pyramid of wavelet resolution levels; OpenJPEG can
stop `r` levels short of the top (its reduce factor) and return the image at 1/2**r of its size
without entropy-decoding the finer subbands, which is most of the work. A 2048 x 2048
radiograph for a 320 x 320 model needs only the 512 x 512 level, which decodes about 13 times
faster than the full image (`benchmarks/bench_preprocess.py`).

pylibjpeg-openjpeg (pydicom's decoder here) has no reduce option, so the reduced decode goes
through Pillow's OpenJPEG binding. It is only an optimisation: every check the full decode makes
runs in front of it (the caller's codestream checks, pydicom's own validation of the dataset),
it is attempted only where the codestream says exactly what the header says (one unsigned grey
component of Bits Stored precision, no image offset), and any refusal, warning or surprise
returns None so that the caller decodes in full, which reports the problem as it always did.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.encaps import generate_frames
from pydicom.pixels.decoders.base import DecodeRunner
from pydicom.uid import UID, JPEG2000TransferSyntaxes

from diagnostics.dicom.image import InstanceInfo
from diagnostics.dicom.warn import recorded_warnings

_SOC, _SIZ, _COD, _SOT = 0xFF4F, 0xFF51, 0xFF52, 0xFF90
_PILLOW_FAILURES: tuple[type[BaseException], ...] = (
    OSError,
    EOFError,
    struct.error,
    ValueError,
    SyntaxError,
    MemoryError,
    Image.DecompressionBombError,
)
"""What Pillow raises on a codestream it will not decode (OpenJPEG errors come as OSError)."""


@dataclass(frozen=True)
class Codestream:
    """The main-header facts of a JPEG 2000 codestream that decide whether to reduce."""

    columns: int
    rows: int
    offset: tuple[int, int]
    """(XOsiz, YOsiz): the image's offset on the reference grid."""
    components: int
    precision: int
    signed: bool
    levels: int | None
    """Wavelet decomposition levels of the default coding style (COD), None if not found."""


def parse_codestream(frame: bytes) -> Codestream | None:
    """SIZ and COD of a raw codestream's main header; None when it is not one (a JP2 file, a
    damaged header), which sends the caller to the full decode."""
    try:
        soc, siz, length = struct.unpack_from(">HHH", frame, 0)
        if soc != _SOC or siz != _SIZ:
            return None
        fields = struct.unpack_from(">H8IH", frame, 6)
        xsiz, ysiz, xosiz, yosiz = fields[1:5]
        components = fields[9]
        ssiz = frame[42]
        levels = None
        position = 4 + length
        while position + 4 <= len(frame):
            marker, size = struct.unpack_from(">HH", frame, position)
            if marker == _SOT or marker >> 8 != 0xFF:
                break
            if marker == _COD:
                levels = frame[position + 9]
                break
            position += 2 + size
    except (struct.error, IndexError):
        return None
    return Codestream(
        columns=xsiz - xosiz,
        rows=ysiz - yosiz,
        offset=(xosiz, yosiz),
        components=components,
        precision=(ssiz & 0x7F) + 1,
        signed=bool(ssiz & 0x80),
        levels=levels,
    )


def reduction_for(rows: int, columns: int, min_size: tuple[int, int], levels: int) -> int:
    """The largest reduce factor r (at most `levels`) whose level, ceil(side / 2**r) on each
    side, still has at least `min_size` (height, width) pixels; 0 when no level is that big."""
    reduction = 0
    while reduction < levels:
        step = 2 ** (reduction + 1)
        if -(-rows // step) < min_size[0] or -(-columns // step) < min_size[1]:
            break
        reduction += 1
    return reduction


def _eligible(info: InstanceInfo) -> bool:
    return (
        UID(info.transfer_syntax_uid) in JPEG2000TransferSyntaxes
        and info.frames == 1
        and info.samples_per_pixel == 1
        and info.photometric_interpretation in ("MONOCHROME1", "MONOCHROME2")
        and not info.pixel_signed
        and info.bits_allocated in (8, 16)
        and info.bits_stored <= info.bits_allocated
    )


def _pydicom_accepts(ds: Dataset, info: InstanceInfo) -> bool:
    """pydicom's own validation of the dataset for decoding, which the full decode runs first:
    anything it would warn about or refuse goes to the full decode, to be reported there."""
    with recorded_warnings() as caught:
        try:
            runner = DecodeRunner(UID(info.transfer_syntax_uid))
            runner.set_source(ds)
            runner.validate()
        except (ValueError, TypeError, AttributeError, KeyError):
            return False
    return not caught


def _pillow_decode(frame: bytes, reduction: int) -> np.ndarray | None:
    with recorded_warnings() as caught:
        try:
            with Image.open(io.BytesIO(frame), formats=["JPEG2000"]) as image:
                image.reduce = reduction  # type: ignore[method-assign, assignment]
                image.load()
                mode, array = image.mode, np.asarray(image)
        except _PILLOW_FAILURES:
            return None
    if caught or mode not in ("L", "I;16"):
        return None
    return array


def decode_reduced(
    ds: Dataset, info: InstanceInfo, min_size: tuple[int, int]
) -> tuple[np.ndarray, int] | None:
    """The single frame at the smallest resolution level still at least `min_size`, as
    (1, rows, columns) stored values in the dtype the full decode gives, and the reduce factor;
    None when there is nothing to gain or anything is unusual (decode in full instead).

    The caller has already checked the encapsulated data (fragments, offsets, end marker).
    """
    if not _eligible(info):
        return None
    frame = next(generate_frames(ds.PixelData, number_of_frames=1), None)
    if frame is None:
        return None
    stream = parse_codestream(frame)
    if (
        stream is None
        or stream.levels is None
        or (stream.rows, stream.columns) != (info.rows, info.columns)
        or stream.offset != (0, 0)
        or stream.components != 1
        or stream.signed
        or stream.precision != info.bits_stored
    ):
        return None
    reduction = reduction_for(info.rows, info.columns, min_size, stream.levels)
    if reduction == 0 or not _pydicom_accepts(ds, info):
        return None
    decoded = _pillow_decode(frame, reduction)
    step = 2**reduction
    expected = (-(-info.rows // step), -(-info.columns // step))
    if decoded is None or decoded.shape != expected:
        return None
    # Pillow widens the samples to fill 8 or 16 bits; shifting back gives the stored values.
    shift = decoded.dtype.itemsize * 8 - stream.precision
    values = decoded.astype(np.uint16 if info.bits_allocated == 16 else np.uint8)
    if shift:
        np.right_shift(values, shift, out=values)
    return values[np.newaxis], reduction
