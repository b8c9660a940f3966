"""PNG and JPEG research images as `DicomImage`s, so they enter exactly the DICOM preprocessing.

Public chest X-ray datasets (NIH ChestX-ray14, CheXpert, the COVID collections) ship 8- or 16-bit
PNG and JPEG files, not DICOM. Training and evaluation must still run the one preprocessing
pipeline that serving runs; the cheapest honest way is to decode such a file into the same
`DicomImage` the DICOM reader returns, with an `InstanceInfo` that says plainly what it is:
no modality, no body part, no view and no pixel spacing (a PNG has none of these), and
deterministic UIDs derived from the file's content so that two copies of one image agree.

Intensity convention: these layouts store radiographs as they are displayed, brighter = denser,
which is DICOM's MONOCHROME2 and what `DicomImage` promises (higher value = denser). A source
that stores the opposite can say `photometric="MONOCHROME1"` and is inverted within its range,
as the DICOM reader does. Colour files are converted to luminance with the DICOM reader's
weights; an alpha channel is dropped with a warning recorded on the image.

`read_image` is the single entry for training data: it looks at the first bytes, not the file
name, and sends DICOM to `diagnostics.dicom.read_instance` and PNG/JPEG here.
"""

from __future__ import annotations

import hashlib
import io
import os
from pathlib import Path
from typing import Literal

import numpy as np
from PIL import Image

from diagnostics.dicom.image import DicomImage, InstanceInfo, InstanceUids
from diagnostics.dicom.reader import Source, read_instance
from diagnostics.errors import ImageFileError

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)
"""ITU-R BT.601 luma weights, the same the DICOM reader uses for colour images."""

Photometric = Literal["MONOCHROME2", "MONOCHROME1"]

# What Pillow raises on a damaged, truncated or hostile file, caught here and nowhere else.
_DECODE_FAILURES: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    SyntaxError,
    EOFError,
    Image.DecompressionBombError,
)


def image_format(head: bytes) -> Literal["PNG", "JPEG"] | None:
    """ "PNG" or "JPEG" from a file's first bytes, None for anything else (e.g. DICOM)."""
    if head.startswith(PNG_MAGIC):
        return "PNG"
    if head.startswith(JPEG_MAGIC):
        return "JPEG"
    return None


def _uid(digest: bytes, salt: str) -> str:
    """A UUID-derived UID (2.25.<int>), stable for the same content: at most 44 characters."""
    value = int.from_bytes(hashlib.sha256(digest + salt.encode()).digest()[:16], "big")
    return f"2.25.{value}"


def _grey(image: Image.Image, warnings: list[str]) -> tuple[np.ndarray, int, bool]:
    """(pixels as float32 2-D, bits per sample, colour converted) for any Pillow mode we accept."""
    mode = image.mode
    if mode in ("RGBA", "LA", "PA"):
        warnings.append(f"{mode} image: alpha channel dropped")
        image = image.convert("RGB" if mode != "LA" else "L")
        mode = image.mode
    if mode in ("P", "CMYK", "YCbCr"):
        image = image.convert("RGB")
        mode = "RGB"
    if mode == "1":
        image = image.convert("L")
        mode = "L"
    if mode == "RGB":
        rgb = np.asarray(image, dtype=np.float32)
        return rgb @ LUMA, 8, True
    if mode == "L":
        return np.asarray(image, dtype=np.float32), 8, False
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.float32), 16, False
    if mode == "I":  # Pillow opens some 16-bit PNGs as 32-bit integers
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ImageFileError(
                f"32-bit integer image with values outside 0..65535 ({values.min()}.."
                f"{values.max()}); convert it to an 8- or 16-bit greyscale PNG"
            )
        return values.astype(np.float32), 16, False
    raise ImageFileError(
        f"Pillow mode {mode!r} is not supported; use 8- or 16-bit greyscale or RGB PNG/JPEG"
    )


def decode_plain_image(
    data: bytes, label: str = "<bytes>", *, photometric: Photometric = "MONOCHROME2"
) -> DicomImage:
    """Decode PNG or JPEG bytes into a `DicomImage` (one frame, higher value = denser).

    Every failure is an `ImageFileError` naming `label` (the path, when there is one).
    """
    kind = image_format(data[:8])
    if kind is None:
        raise ImageFileError(f"{label}: not a PNG or JPEG file (no PNG or JPEG signature)")
    warnings: list[str] = []
    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            pixels, bits, colour = _grey(opened, warnings)
            original_mode = opened.mode
    except ImageFileError as exc:
        raise ImageFileError(f"{label}: {exc}") from None
    except _DECODE_FAILURES as exc:
        raise ImageFileError(f"{label}: cannot be decoded as {kind} ({exc})") from None
    if pixels.ndim != 2 or min(pixels.shape) < 1:
        raise ImageFileError(f"{label}: decoded to shape {pixels.shape}, not a 2-D image")
    high = float(2**bits - 1)
    inverted = photometric == "MONOCHROME1"
    if inverted:
        pixels = np.float32(high) - pixels
    frames = np.ascontiguousarray(pixels[np.newaxis], dtype=np.float32)
    frames.setflags(write=False)
    digest = hashlib.sha256(data).digest()
    rows, columns = pixels.shape
    info = InstanceInfo(
        uids=InstanceUids(
            patient_id="",
            study_instance_uid=_uid(digest, "study"),
            series_instance_uid=_uid(digest, "series"),
            sop_instance_uid=_uid(digest, "instance"),
            sop_class_uid="",
        ),
        sop_class_name=f"{kind} image (not DICOM)",
        transfer_syntax_uid="",
        transfer_syntax_name=kind,
        modality="",
        body_part=None,
        view_position=None,
        rows=rows,
        columns=columns,
        frames=1,
        samples_per_pixel=3 if colour else 1,
        photometric_interpretation="RGB" if colour else photometric,
        bits_allocated=bits,
        bits_stored=bits,
        pixel_signed=False,
        pixel_spacing_mm=None,
        spacing_source=None,
        warnings=(*warnings, f"decoded from {kind} (Pillow mode {original_mode})"),
    )
    return DicomImage(
        info=info,
        pixels=frames,
        value_range=(0.0, high),
        inverted=inverted,
        color_converted=colour,
        windows=(),
        voi_lut_function=None,
    )


def read_plain_image(
    path: str | os.PathLike[str], *, photometric: Photometric = "MONOCHROME2"
) -> DicomImage:
    """Read a PNG or JPEG file; a missing or unreadable file is an `ImageFileError`."""
    label = str(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageFileError(f"{label}: no such file") from None
    except OSError as exc:
        raise ImageFileError(f"{label}: cannot be read ({exc.strerror})") from None
    return decode_plain_image(data, label, photometric=photometric)


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(8)
    except OSError:
        return b""  # let the DICOM reader report the missing or unreadable file its own way


def plain_image_kind(source: Source) -> Literal["PNG", "JPEG"] | None:
    """ "PNG" or "JPEG" when the bytes or file start with that signature, otherwise None."""
    if isinstance(source, bytes | bytearray | memoryview):
        return image_format(bytes(source[:8]))
    return image_format(_head(Path(source)))


def read_image(source: Source) -> DicomImage:
    """DICOM, PNG or JPEG (path or bytes) to a `DicomImage`, chosen by content, not by name."""
    if plain_image_kind(source) is None:
        return read_instance(source)
    if isinstance(source, bytes | bytearray | memoryview):
        return decode_plain_image(bytes(source))
    return read_plain_image(source)


def plain_image_size(path: Path) -> tuple[int, int]:
    """(rows, columns) of a PNG or JPEG from its header alone, for converting pixel boxes."""
    try:
        with Image.open(path) as opened:
            width, height = opened.size
    except FileNotFoundError:
        raise ImageFileError(f"{path}: no such file") from None
    except _DECODE_FAILURES as exc:
        raise ImageFileError(f"{path}: cannot be read as PNG or JPEG ({exc})") from None
    return height, width
