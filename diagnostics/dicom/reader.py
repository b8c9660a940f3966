"""Read a DICOM instance from a path or bytes; the single door through which DICOM enters.

The contract: return a validated `InstanceInfo` / `DicomImage`, or raise a subclass of
`InputError` whose message names the problem. pydicom parses lazily and reports damage through
a wide range of built-in exceptions, so parsing and decoding run inside one boundary that turns
exactly those into `CorruptDicomError`; nothing else escapes.
"""

from __future__ import annotations

import copy
import io
import logging
import os
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, TypeVar

import pydicom
from pydicom.datadict import keyword_for_tag
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import BytesLengthException, InvalidDicomError
from pydicom.filebase import DicomFileLike
from pydicom.filereader import _read_file_meta_info
from pydicom.filewriter import write_file_meta_info
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian

from diagnostics.dicom.header import ReadLimits, parse_header
from diagnostics.dicom.image import DicomImage, InstanceInfo, InstanceUids
from diagnostics.dicom.pixels import check_native_length, decode_image
from diagnostics.dicom.warn import recorded_warnings
from diagnostics.errors import CorruptDicomError, InputError, NotDicomError, TooLargeError

log = logging.getLogger(__name__)

Source = str | os.PathLike[str] | bytes | bytearray | memoryview
"""A path to a DICOM file, or the bytes of one (a Part 10 file or a bare dataset)."""

# The built-in exceptions pydicom and its codecs raise on damaged input. Named once, caught at
# this boundary only, so that library code elsewhere never catches broad exceptions.
PARSER_FAILURES: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    EOFError,
    OSError,
    struct.error,
    zlib.error,
    NotImplementedError,
    RuntimeError,
    OverflowError,
    InvalidDicomError,
    BytesLengthException,
)

_PREAMBLE = 128
# Pixel Data, Float Pixel Data and Double Float Pixel Data, where header-only reads stop.
_PIXEL_DATA_VRS = {0x7FE00010: "OB", 0x7FE00008: "OF", 0x7FE00009: "OD"}
_UNDEFINED_LENGTH = 0xFFFFFFFF
_LONGEST_ELEMENT_HEADER = 12
_INFLATE_CHUNK = 1 << 20
T = TypeVar("T")


@contextmanager
def _open(source: Source, limits: ReadLimits) -> Iterator[tuple[BinaryIO, str]]:
    """A readable stream and a label for messages; size-checked before anything is read.

    Files are handed to pydicom as open streams rather than read into bytes first: for a
    10 MB radiograph that saves a full copy of the pixel data.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) > limits.max_file_bytes:
            raise TooLargeError(
                f"{len(source):,} bytes is over the limit of {limits.max_file_bytes:,}"
            )
        yield io.BytesIO(source), "<bytes>"
        return
    path = Path(source)
    label = str(path)
    try:
        if path.is_dir():
            raise InputError(f"{label}: is a folder, not a file")
        size = path.stat().st_size
        if size > limits.max_file_bytes:
            raise TooLargeError(
                f"{label}: {size:,} bytes is over the limit of {limits.max_file_bytes:,}"
            )
        stream = path.open("rb")
    except FileNotFoundError:
        raise InputError(f"{label}: no such file") from None
    except PermissionError:
        raise InputError(f"{label}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{label}: cannot be read ({exc.strerror})") from None
    with stream:
        yield stream, label


def _looks_like_bare_dataset(data: bytes) -> bool:
    """A dataset without the Part 10 preamble usually starts with a group 0002 or 0008 tag."""
    return data[:2] in (b"\x02\x00", b"\x08\x00") and len(data) >= 8


@dataclass
class _Parsed:
    """What `_parse` read: the dataset, tolerated defects, and for a header-only read the
    length declared for the pixel data it stopped at and how many of its bytes are present."""

    dataset: Dataset
    notes: list[str]
    pixel_length: int | None = None
    pixel_present: int | None = None


def _parse(stream: BinaryIO, stop_before_pixels: bool, limits: ReadLimits) -> _Parsed:
    data = stream.read(_PREAMBLE + 4)
    stream.seek(0)
    if not data:
        raise NotDicomError("the input is empty")
    has_marker = data[_PREAMBLE : _PREAMBLE + 4] == b"DICM"
    if not has_marker and not _looks_like_bare_dataset(data):
        raise NotDicomError(
            "not a DICOM file: no 'DICM' marker at byte 128 and no DICOM dataset at the start"
        )
    notes: list[str] = []
    if not has_marker:
        notes.append("no Part 10 preamble and file meta information; read as a bare dataset")
    with recorded_warnings() as caught:
        stream, deflated_meta = (
            _inflated(stream, limits.max_file_bytes) if has_marker else (stream, None)
        )
        ds, pixel = _read_dataset(stream, not has_marker, stop_before_pixels)
        parsed = _Parsed(ds, notes)
        if pixel is not None:  # the stream is at the pixel data element's header
            parsed.pixel_length = pixel[1]
            parsed.pixel_present = _bytes_after_element_header(stream, ds)
        _check_complete(ds, stream, caught)
        if deflated_meta is not None:
            ds.file_meta = deflated_meta  # as received: the inflated copy is read as explicit VR
        if pixel is not None:
            ds.add_new(pixel[0], _PIXEL_DATA_VRS[pixel[0]], None)
        for _ in ds.iterall():  # parse every element now, inside the boundary
            pass
        if not has_marker:
            _infer_transfer_syntax(ds)
    notes.extend(str(w.message) for w in caught)
    if len(ds) == 0:
        if has_marker:  # the 'DICM' marker says DICOM; nothing after the file meta: cut short
            raise CorruptDicomError("the data is truncated: no data elements after the file meta")
        raise NotDicomError("no DICOM data elements could be read")
    return parsed


def peek_stream(data: bytes, budget: int = 1 << 20) -> BinaryIO:
    """`data` to read a few leading attributes from leniently (STOW-RS names a refused part by
    its UIDs): a deflated dataset inflated only up to `budget` bytes and cut there, never in
    full. Raises what parsing the file meta raises (`PARSER_FAILURES`)."""
    stream = io.BytesIO(data)
    if data[_PREAMBLE : _PREAMBLE + 4] != b"DICM":
        return stream
    return _inflated(stream, budget, cut=True)[0]


def _inflated(
    stream: BinaryIO, budget: int, cut: bool = False
) -> tuple[BinaryIO, FileMetaDataset | None]:
    """A Deflated Explicit VR Little Endian file inflated as a stream, never past the size
    limit; other files unchanged (and no file meta returned).

    pydicom inflates a deflated dataset whole, so a megabyte that inflates to gigabytes (a
    deflate bomb) would be expanded in full before any limit could refuse it. Here the size
    limit counts inflated bytes. The copy is handed on as Explicit VR Little Endian, which is
    what a deflated dataset is once inflated; the caller puts the original file meta back.
    """
    stream.seek(_PREAMBLE + 4)
    meta = _read_file_meta_info(stream)
    if str(meta.get("TransferSyntaxUID", "")).strip("\0 ") != DeflatedExplicitVRLittleEndian:
        stream.seek(0)
        return stream, None
    explicit = copy.deepcopy(meta)  # setting an attribute changes the shared element
    explicit.TransferSyntaxUID = ExplicitVRLittleEndian
    out = io.BytesIO()
    out.write(b"\0" * _PREAMBLE + b"DICM")
    write_file_meta_info(DicomFileLike(out), explicit, enforce_standard=False)
    inflate_into(out, stream, budget - out.tell(), cut=cut)
    out.seek(0)
    return out, meta


def inflate_into(out: BinaryIO, stream: BinaryIO, budget: int, cut: bool = False) -> int:
    """Inflate the raw deflate stream read from `stream` into `out`, at most `budget` bytes;
    `TooLargeError` as soon as it would inflate to more (or, with `cut`, stop there).
    Returns the inflated size.

    Inflation proceeds in bounded steps (`max_length`), so memory never exceeds the budget
    plus one step, however small the compressed input is.
    """
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    total = 0
    while not inflater.eof:
        data = inflater.unconsumed_tail or stream.read(_INFLATE_CHUNK)
        if not data:
            raise CorruptDicomError(
                "the deflated dataset is truncated: its deflate stream ends early"
            )
        chunk = inflater.decompress(data, _INFLATE_CHUNK)
        total += len(chunk)
        if total > budget and cut:
            out.write(chunk[: len(chunk) - (total - budget)])
            return budget
        if total > budget:
            raise TooLargeError(
                f"the deflated dataset inflates to more than {budget:,} bytes, over the "
                "limit for one instance (the limit counts inflated bytes)"
            )
        out.write(chunk)
    return total


def _bytes_after_element_header(stream: BinaryIO, ds: Dataset) -> int:
    """How many value bytes follow the element header `stream` is positioned at."""
    here = stream.tell()
    end = stream.seek(0, io.SEEK_END)
    stream.seek(here)
    implicit = bool(ds.original_encoding[0])
    return max(0, end - here - (8 if implicit else _LONGEST_ELEMENT_HEADER))


def _read_dataset(
    stream: BinaryIO, force: bool, stop_before_pixels: bool
) -> tuple[Dataset, tuple[int, int] | None]:
    """`dcmread`, except that a header-only read also says which pixel data element it stopped at.

    The header check needs to know that an image has pixel data without reading it, and
    pydicom's own `stop_before_pixels` drops that fact; the caller keeps an empty placeholder.
    The declared length comes too: a short native Pixel Data is refused from it.
    """
    if not stop_before_pixels:
        return pydicom.dcmread(stream, force=force), None
    found: list[tuple[int, int]] = []

    def at_pixel_data(tag: int, vr: str | None, length: int) -> bool:
        if tag in _PIXEL_DATA_VRS:
            found.append((tag, length))
            return True
        return False

    ds = pydicom.filereader.read_partial(stream, at_pixel_data, force=force)
    return ds, (found[0] if found else None)


def _check_complete(ds: Dataset, stream: BinaryIO, caught: list[warnings.WarningMessage]) -> None:
    """Refuse data that ends inside an element: pydicom keeps what it read before the end, silently.

    A file cut short (an interrupted transfer) would otherwise surface as a misleading error
    further on (no elements at all, a missing attribute) or, worse, as a plausible image. Runs
    before the elements are converted, while their declared lengths and file offsets are known.
    """
    for warning in caught:
        if "End of file reached" in str(warning.message):
            raise CorruptDicomError(f"the data is truncated: {warning.message}")
    meta = getattr(ds, "file_meta", None) or Dataset()
    end = 0
    for owner in (meta, ds):
        for tag in list(owner.keys()):  # keys only: iterating would convert the elements
            elem = owner.get_item(tag, keep_deferred=True)
            if not isinstance(elem, RawDataElement):
                end = 0  # a converted element's extent is unknown: no end-of-data check
                continue
            present = len(elem.value or b"")
            if elem.length != _UNDEFINED_LENGTH and present < elem.length:
                raise CorruptDicomError(
                    f"the data is truncated inside {keyword_for_tag(tag) or tag}: "
                    f"{present:,} of its {elem.length:,} bytes are present"
                )
            undefined = elem.length == _UNDEFINED_LENGTH
            end = elem.value_tell + (present + 8 if undefined else elem.length)
    if not end:
        return
    stream.seek(end)
    tail = stream.read(_LONGEST_ELEMENT_HEADER)
    if len(tail) < _LONGEST_ELEMENT_HEADER and tail.strip(b"\0"):
        raise CorruptDicomError(
            f"the data is truncated: it ends with {len(tail)} byte(s) of an incomplete element"
        )


def _infer_transfer_syntax(ds: Dataset) -> None:
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = ds.file_meta if hasattr(ds, "file_meta") else FileMetaDataset()
    if "TransferSyntaxUID" not in meta:
        implicit, little = ds.original_encoding
        if implicit:
            meta.TransferSyntaxUID = ImplicitVRLittleEndian
        else:
            meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian
        ds.file_meta = meta


def _guarded(label: str, step: Callable[[], T]) -> T:
    """Run `step`, turning pydicom's built-in failure exceptions into `CorruptDicomError`."""
    try:
        return step()
    except InputError as exc:
        raise type(exc)(f"{label}: {exc}" if label != "<bytes>" else str(exc)) from None
    except PARSER_FAILURES as exc:
        detail = " ".join(line.strip() for line in str(exc).splitlines())[:400]
        detail = detail or type(exc).__name__
        prefix = f"{label}: " if label != "<bytes>" else ""
        raise CorruptDicomError(f"{prefix}damaged DICOM data ({detail})") from None


def _read(
    source: Source, limits: ReadLimits, stop_before_pixels: bool
) -> tuple[Dataset, InstanceInfo, str]:
    with _open(source, limits) as (stream, label):

        def step() -> tuple[Dataset, InstanceInfo]:
            parsed = _parse(stream, stop_before_pixels, limits)
            info = parse_header(parsed.dataset, limits, parsed.notes)
            _check_pixel_length(info, parsed)
            return parsed.dataset, info

        ds, info = _guarded(label, step)
    for note in info.warnings:
        log.warning("%s: tolerated DICOM defect: %s", label, note)
    return ds, info, label


def _check_pixel_length(info: InstanceInfo, parsed: _Parsed) -> None:
    """A header-only read still refuses native pixel data that is cut short or shorter than
    the header says: such an instance must not be acknowledged and fail only at screening."""
    declared, present = parsed.pixel_length, parsed.pixel_present
    if declared is None or present is None or declared == _UNDEFINED_LENGTH:
        return
    if present < declared:
        raise CorruptDicomError(
            f"the data is truncated inside PixelData: {present:,} of its {declared:,} bytes "
            "are present"
        )
    if not UID(info.transfer_syntax_uid).is_encapsulated:
        check_native_length(info, declared)


def read_info(source: Source, limits: ReadLimits | None = None) -> InstanceInfo:
    """Read and validate only the header: cheap, for grouping files into studies."""
    _, info, _ = _read(source, limits or ReadLimits(), stop_before_pixels=True)
    return info


@dataclass(frozen=True)
class ParsedInstance:
    """A parsed and validated instance whose pixels are not decoded yet.

    For data already in memory: the header decides (scope, grouping) before the costly decode,
    without parsing the bytes a second time.
    """

    dataset: Dataset = field(repr=False)
    info: InstanceInfo
    label: str

    @property
    def uids(self) -> InstanceUids:
        return self.info.uids

    def decode(self, min_size: tuple[int, int] | None = None) -> DicomImage:
        """`min_size`: the model's input (height, width); see `pixels.decode_image`."""
        return _guarded(self.label, lambda: decode_image(self.dataset, self.info, min_size))


def parse_instance(source: Source, limits: ReadLimits | None = None) -> ParsedInstance:
    """Read and validate a whole instance, pixel data included, but do not decode it."""
    ds, info, label = _read(source, limits or ReadLimits(), stop_before_pixels=False)
    return ParsedInstance(ds, info, label)


def read_instance(
    source: Source, limits: ReadLimits | None = None, min_size: tuple[int, int] | None = None
) -> DicomImage:
    """Read, validate and decode one instance into a `DicomImage` (JPEG 2000 only to the
    resolution `min_size` needs, when given: `pixels.decode_image`).

    Raises a subclass of `InputError` for anything it cannot use; never anything else.
    Thread-safe: pydicom's warnings are recorded one read at a time (`warn.recorded_warnings`).
    """
    return parse_instance(source, limits).decode(min_size)


def read_stream(stream: BinaryIO, limits: ReadLimits | None = None) -> DicomImage:
    """Like `read_instance` for an open binary stream (an upload, a network buffer)."""
    limits = limits or ReadLimits()
    data = stream.read(limits.max_file_bytes + 1)
    return read_instance(data, limits)
