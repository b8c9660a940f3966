"""Mutated valid files are either read or refused with an `InputError`: nothing else escapes.

The reader's contract is that damaged input can never crash a caller with a built-in exception
(or worse, pass as an image it is not). Hypothesis mutates valid corpus files of several
transfer syntaxes: byte flips, insertions, deletions and truncations biased towards the header,
and hostile values (huge, negative, empty, wrong-VR content) written over header elements.
Derandomized, so CI runs the same 2,300 inputs every time; a failure prints the seed file and
the mutations, and each bug found this way is kept below as a plain regression test.

Decoded size is capped at 64 MiB so a mutated Rows or NumberOfFrames cannot eat the machine.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.datadict import tag_for_keyword

from diagnostics.dicom import ReadLimits, read_info, read_instance
from diagnostics.errors import CorruptDicomError, InputError
from tests.dicom.corpus import (
    Corpus,
    Slot,
    element_slots,
    replace_keyword,
    replace_value,
)

FUZZ_LIMITS = ReadLimits(max_decoded_bytes=64 << 20)
T = TypeVar("T")

# pydicom warns about every invalid value a mutation creates; the reader tolerates those by design.
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

SEED_NAMES = (
    "explicit-vr-little-endian",
    "implicit-vr-little-endian",
    "explicit-vr-big-endian-dcmtk",
    "deflated",
    "rle",
    "jpeg-ls-lossless",
    "jpeg-2000-lossless",
    "jpeg-lossless-p14-dcmtk",
    "ybr-full-422-jpeg-baseline-dcmtk",
    "multiframe-rle",
    "signed-16bit-rescaled",
    "bare-dataset-implicit",
)

CRITICAL_KEYWORDS = (
    "FileMetaInformationGroupLength",
    "TransferSyntaxUID",
    "MediaStorageSOPClassUID",
    "SpecificCharacterSet",
    "SOPClassUID",
    "SOPInstanceUID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SamplesPerPixel",
    "PhotometricInterpretation",
    "NumberOfFrames",
    "Rows",
    "Columns",
    "ImagerPixelSpacing",
    "BitsAllocated",
    "BitsStored",
    "HighBit",
    "PixelRepresentation",
    "PlanarConfiguration",
    "WindowCenter",
    "WindowWidth",
    "RescaleIntercept",
    "RescaleSlope",
    "PixelData",
)
"""Elements the reader interprets; half of all overwrites target one of these."""
CRITICAL_TAGS = frozenset(tag_for_keyword(keyword) for keyword in CRITICAL_KEYWORDS)
PREAMBLE_END = 132

HOSTILE_CONSTANTS = (
    b"",
    b"\x00",
    b"\xff\xff",
    b"\xff\xff\xff\xff",
    b"\x00\x00\x00\x80",
    b"0",
    b"-1",
    b"-32769",
    b"4294967296",
    b"99999999999999999999",
    b"1e308",
    b"-1e308",
    b"1e38",
    b"NaN",
    b"inf",
    b"3.5",
    b"1\\2\\3",
    b"\\\\\\",
    b"MONOCHROME3",
    b"PALETTE COLOR",
    b"YBR_FULL_422",
    b"1.2.840.10008.1.2.4.50\x00",
    b"1.2.840.10008.1.2.5\x00",
    b"1.2.840.10008.1.2.1.99",
    b"9" * 300,
)


def _fuzz_settings(examples: int) -> settings:
    """Same inputs on every run (derandomized, no example database), no per-input deadline."""
    return settings(
        max_examples=examples,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


@dataclass(frozen=True)
class Seed:
    """A valid corpus file and where its header elements are, for targeted overwrites."""

    name: str
    data: bytes
    slots: tuple[Slot, ...]
    critical: tuple[Slot, ...]
    header_end: int
    """Offset of the pixel data (or the file's end): mutations favour the bytes before it."""


@dataclass(frozen=True)
class Overwrite:
    slot: Slot
    value: bytes

    def __str__(self) -> str:
        return f"element ({self.slot.tag >> 16:04X},{self.slot.tag & 0xFFFF:04X}) := {self.value!r}"


@dataclass(frozen=True)
class ByteEdit:
    kind: str
    """flip (xor one byte), insert, delete or truncate."""
    position: int
    payload: bytes = b""
    count: int = 0

    def apply(self, data: bytes) -> bytes:
        at = min(self.position, len(data))
        if self.kind == "flip" and at < len(data):
            return data[:at] + bytes([data[at] ^ self.count]) + data[at + 1 :]
        if self.kind == "insert":
            return data[:at] + self.payload + data[at:]
        if self.kind == "delete":
            return data[:at] + data[at + self.count :]
        if self.kind == "truncate":
            return data[:at]
        return data

    def __str__(self) -> str:
        detail = {"flip": f"xor {self.count:#04x}", "insert": repr(self.payload)}
        extra = detail.get(self.kind, str(self.count) if self.kind == "delete" else "")
        return f"{self.kind} at {self.position} {extra}".rstrip()


def _seed(corpus: Corpus, name: str) -> Seed:
    data = corpus.valid[name].path.read_bytes()
    slots = element_slots(data)
    pixel = slots.get(0x7FE00010)
    critical = tuple(slot for slot in slots.values() if slot.tag in CRITICAL_TAGS)
    end = pixel.value_offset if pixel else len(data)
    return Seed(name, data, tuple(slots.values()), critical, end)


@pytest.fixture(scope="module")
def seeds(corpus: Corpus) -> tuple[Seed, ...]:
    return tuple(_seed(corpus, name) for name in SEED_NAMES)


def _hostile_values() -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.sampled_from(HOSTILE_CONSTANTS),
        st.binary(max_size=24),
        st.integers(0, 0xFFFF).map(lambda v: struct.pack("<H", v)),
        st.integers(0, 0xFFFFFFFF).map(lambda v: struct.pack("<L", v)),
    )


def _overwrites(seed: Seed, draw: st.DrawFn) -> list[Overwrite]:
    """One to three element overwrites, applied from the end of the file backwards.

    Applying later elements first keeps the recorded offsets of earlier ones valid.
    """
    chosen = []
    for _ in range(draw(st.integers(1, 3))):
        slots = draw(st.sampled_from((seed.slots, seed.critical)))
        chosen.append(Overwrite(draw(st.sampled_from(slots)), draw(_hostile_values())))
    unique = {o.slot.tag: o for o in chosen}
    return sorted(unique.values(), key=lambda o: o.slot.value_offset, reverse=True)


def _byte_edits(seed: Seed, draw: st.DrawFn, at_least: int) -> list[ByteEdit]:
    edits = []
    for _ in range(draw(st.integers(at_least, 4))):
        # Mostly after the preamble (where a flip changes nothing) and before the pixel data.
        start = draw(st.sampled_from((0, PREAMBLE_END, PREAMBLE_END)))
        end = draw(st.sampled_from((seed.header_end, seed.header_end, len(seed.data))))
        position = draw(st.integers(min(start, end - 1), max(0, end - 1)))
        kind = draw(st.sampled_from(("flip", "flip", "insert", "delete", "truncate")))
        edits.append(
            ByteEdit(
                kind,
                position,
                payload=draw(st.binary(min_size=1, max_size=16)) if kind == "insert" else b"",
                count=draw(st.integers(1, 255 if kind == "flip" else 64)),
            )
        )
    return edits


@st.composite
def mutants(
    draw: st.DrawFn, seeds: tuple[Seed, ...], overwrite: bool, edit: bool
) -> tuple[bytes, str]:
    """A mutated seed and a description of what was done to it, for the failure message."""
    seed = draw(st.sampled_from(seeds))
    data, steps = seed.data, [seed.name]
    if overwrite:
        slots = {slot.tag: slot for slot in seed.slots}
        for change in _overwrites(seed, draw):
            data = replace_value(data, slots, change.slot.tag, change.value)
            steps.append(str(change))
    if edit:
        for edit_ in _byte_edits(seed, draw, at_least=0 if overwrite else 1):
            data = edit_.apply(data)
            steps.append(str(edit_))
    return data, "; ".join(steps)


def _outcome(read: Callable[[bytes], T], data: bytes, description: str) -> T | None:
    """`read(data)`, or None when refused with an `InputError`; anything else fails the test.

    BaseException, not Exception: a panicking Rust codec raises pyo3's PanicException, which
    derives from BaseException and would otherwise pass by unnoticed.
    """
    try:
        return read(data)
    except InputError:
        return None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - catching everything else is this test's point
        pytest.fail(f"{type(exc).__name__} escaped for [{description}]: {exc}")


def _assert_handled(data: bytes, description: str) -> None:
    """Read `data`; a refusal must be an `InputError`, a success must be a sane image."""
    image = _outcome(lambda raw: read_instance(raw, FUZZ_LIMITS), data, description)
    if image is None:
        return
    info = image.info
    assert image.pixels.shape == (info.frames, info.rows, info.columns), description
    assert image.pixels.dtype == np.float32, description
    assert np.isfinite(image.pixels).all(), f"non-finite pixels for [{description}]"


def _assert_header_handled(data: bytes, description: str) -> None:
    _outcome(lambda raw: read_info(raw, FUZZ_LIMITS), data, description)


@_fuzz_settings(700)
@given(data=st.data())
def test_byte_mutations_are_read_or_refused(seeds: tuple[Seed, ...], data: st.DataObject) -> None:
    mutant, description = data.draw(mutants(seeds, overwrite=False, edit=True))
    _assert_handled(mutant, description)


@pytest.mark.slow
@_fuzz_settings(900)
@given(data=st.data())
def test_hostile_element_values_are_read_or_refused(
    seeds: tuple[Seed, ...], data: st.DataObject
) -> None:
    mutant, description = data.draw(mutants(seeds, overwrite=True, edit=False))
    _assert_handled(mutant, description)


@_fuzz_settings(400)
@given(data=st.data())
def test_combined_mutations_are_read_or_refused(
    seeds: tuple[Seed, ...], data: st.DataObject
) -> None:
    mutant, description = data.draw(mutants(seeds, overwrite=True, edit=True))
    _assert_handled(mutant, description)


@_fuzz_settings(300)
@given(data=st.data())
def test_header_only_reads_of_mutations_are_read_or_refused(
    seeds: tuple[Seed, ...], data: st.DataObject
) -> None:
    mutant, description = data.draw(mutants(seeds, overwrite=True, edit=True))
    _assert_header_handled(mutant, description)


# --- regressions found by the fuzzer, kept as plain tests --------------------------------------


def test_file_cut_inside_the_meta_group_length_is_corrupt(corpus: Corpus) -> None:
    """pydicom raised its own BytesLengthException here, which escaped the reader."""
    data = corpus.valid["explicit-vr-little-endian"].path.read_bytes()
    with pytest.raises(CorruptDicomError):
        read_instance(data[:141])


def test_rle_segment_overrunning_its_frame_is_corrupt(corpus: Corpus) -> None:
    """pylibjpeg-rle panicked (pyo3 PanicException, a BaseException), which escaped the reader."""
    with pytest.raises(CorruptDicomError, match="RLE segment"):
        read_instance(corpus.malformed["rle-segment-overrun"].path)


def test_rescale_beyond_float32_is_corrupt(corpus: Corpus) -> None:
    """A finite RescaleSlope of 1e38 made every pixel inf; the image was returned as valid."""
    data = replace_keyword(
        corpus.valid["explicit-vr-little-endian"].path.read_bytes(), "RescaleSlope", b"1e38"
    )
    with pytest.raises(CorruptDicomError, match="RescaleSlope"):
        read_instance(data)
