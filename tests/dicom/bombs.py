"""Hostile instances built in memory: deflate bombs and images larger than any budget.

Each is built without ever holding its inflated or decoded form: the bomb's payload is deflated
once as a 16 MiB block and that block repeated (a full flush makes the blocks independent), so a
1 GiB bomb costs a fraction of a second and about 1 MB to build.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    JPEGBaseline8Bit,
    generate_uid,
)

DX = "1.2.840.10008.5.1.4.1.1.1.1"
_BLOCK = 16 << 20
_PRIVATE_TAG = b"\x09\x00\x10\x10"  # (0009,1010), after its private creator (0009,0010)


def image_dataset(
    rows: int = 64,
    columns: int = 64,
    *,
    study: str | None = None,
    sop: str | None = None,
    pixels: np.ndarray | None = None,
    photometric: str = "MONOCHROME2",
) -> Dataset:
    """A valid 16-bit DX chest image (pixels given, or a ramp)."""
    ds = Dataset()
    ds.SOPClassUID = DX
    ds.SOPInstanceUID = sop or generate_uid()
    ds.StudyInstanceUID = study or generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "BOMB"
    ds.Modality = "DX"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
    ds.PixelRepresentation = 0
    if pixels is None:
        pixels = (np.arange(rows * columns, dtype=np.uint16) % 4096).reshape(rows, columns)
    ds.PixelData = pixels.astype(np.uint16).tobytes()
    return ds


def part10(ds: Dataset, syntax: str = ExplicitVRLittleEndian) -> bytes:
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = syntax
    out = io.BytesIO()
    pydicom.dcmwrite(out, ds, enforce_file_format=True)
    return out.getvalue()


def _meta(ds: Dataset, syntax: str) -> bytes:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.SOPClassUID
    meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    meta.TransferSyntaxUID = syntax
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.1"
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_file_meta_info(out, meta, enforce_standard=True)
    return b"\0" * 128 + b"DICM" + out.getvalue()


def _encode(ds: Dataset) -> bytes:
    out = DicomBytesIO()
    out.is_little_endian, out.is_implicit_VR = True, False
    write_dataset(out, ds)
    return out.getvalue()


def deflate_bomb(inflated_bytes: int, ds: Dataset | None = None) -> bytes:
    """A Deflated Explicit VR Little Endian instance whose private OB element inflates to
    `inflated_bytes` (a multiple of 16 MiB) zeros: about 1 KB on the wire per MiB inflated."""
    assert inflated_bytes % _BLOCK == 0
    ds = ds or image_dataset()
    before, after = Dataset(), Dataset()
    for elem in ds:
        (before if elem.tag < 0x00091010 else after).add(elem)
    before.add_new(0x00090010, "LO", "BOMB")
    header = _PRIVATE_TAG + b"OB\0\0" + struct.pack("<I", inflated_bytes)
    deflater = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    out = [deflater.compress(_encode(before) + header), deflater.flush(zlib.Z_FULL_FLUSH)]
    block = deflater.compress(bytes(_BLOCK)) + deflater.flush(zlib.Z_FULL_FLUSH)
    out += [block] * (inflated_bytes // _BLOCK)
    out += [deflater.compress(_encode(after)), deflater.flush()]
    return _meta(ds, DeflatedExplicitVRLittleEndian) + b"".join(out)


def huge_jpeg_header(rows: int, columns: int) -> bytes:
    """A baseline JPEG instance that declares `rows` x `columns` 8-bit pixels but holds a
    token codestream: only the header can refuse it before a decoder allocates anything."""
    ds = image_dataset(8, 8)
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\xd8" + bytes(30) + b"\xff\xd9"])
    ds["PixelData"].VR = "OB"
    return part10(ds, JPEGBaseline8Bit)
