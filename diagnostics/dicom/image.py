"""In-memory results of reading a DICOM instance: what the rest of the pipeline relies on.

These are frozen and validated by the reader, so downstream code (gate, preprocessing, reports)
can trust them without re-checking the DICOM header.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pydicom.dataset import Dataset


@dataclass(frozen=True)
class InstanceUids:
    """The identifiers that place an instance in a patient, study and series."""

    patient_id: str
    study_instance_uid: str
    series_instance_uid: str
    sop_instance_uid: str
    sop_class_uid: str


class HasUids(Protocol):
    """Anything that can be grouped into studies and series."""

    @property
    def uids(self) -> InstanceUids: ...


@dataclass(frozen=True)
class Window:
    """A VOI window in the image's output units (after rescale and MONOCHROME1 inversion)."""

    center: float
    width: float
    explanation: str | None = None


@dataclass(frozen=True)
class InstanceInfo:
    """Everything read from the header of an image instance, validated, before any decoding."""

    uids: InstanceUids
    sop_class_name: str
    transfer_syntax_uid: str
    transfer_syntax_name: str
    modality: str
    body_part: str | None
    view_position: str | None
    rows: int
    columns: int
    frames: int
    samples_per_pixel: int
    photometric_interpretation: str
    bits_allocated: int
    bits_stored: int
    pixel_signed: bool
    pixel_spacing_mm: tuple[float, float] | None
    """(row spacing, column spacing): distance between row centres first, as DICOM orders it."""
    spacing_source: str | None
    """The attribute that gave the spacing: PixelSpacing, ImagerPixelSpacing or
    PixelMeasuresSequence."""
    warnings: tuple[str, ...] = ()
    """Minor defects tolerated while reading (lenient in), kept so a person can see them."""
    dataset: Dataset = field(default_factory=Dataset, compare=False, repr=False)
    """The header without pixel data, for reports that must reference or copy attributes."""

    @property
    def decoded_bytes(self) -> int:
        """Size of the decoded pixel data, the figure that size limits are checked against."""
        bytes_per_sample = max(1, (self.bits_allocated + 7) // 8)
        return self.rows * self.columns * self.frames * self.samples_per_pixel * bytes_per_sample

    @property
    def image_bytes(self) -> int:
        """Size of the decoded image the pipeline keeps: float32, one value per pixel."""
        return self.rows * self.columns * self.frames * 4

    @property
    def decode_peak_bytes(self) -> int:
        """Estimated peak memory of decoding: the decoder's buffer and the float32 image, and
        for colour the float32 samples its luminance is computed from (`pixels.decode_image`)."""
        colour = self.image_bytes * self.samples_per_pixel if self.samples_per_pixel > 1 else 0
        return self.decoded_bytes + self.image_bytes + colour

    def summary(self) -> dict[str, Any]:
        """A JSON-ready description without patient names or birth dates."""
        return {
            "patient_id": self.uids.patient_id,
            "study_instance_uid": self.uids.study_instance_uid,
            "series_instance_uid": self.uids.series_instance_uid,
            "sop_instance_uid": self.uids.sop_instance_uid,
            "sop_class": {"uid": self.uids.sop_class_uid, "name": self.sop_class_name},
            "transfer_syntax": {"uid": self.transfer_syntax_uid, "name": self.transfer_syntax_name},
            "modality": self.modality,
            "body_part": self.body_part,
            "view_position": self.view_position,
            "rows": self.rows,
            "columns": self.columns,
            "frames": self.frames,
            "samples_per_pixel": self.samples_per_pixel,
            "photometric_interpretation": self.photometric_interpretation,
            "bits_allocated": self.bits_allocated,
            "bits_stored": self.bits_stored,
            "pixel_signed": self.pixel_signed,
            "pixel_spacing_mm": list(self.pixel_spacing_mm) if self.pixel_spacing_mm else None,
            "spacing_source": self.spacing_source,
            "warnings": list(self.warnings),
        }


@dataclass(frozen=True)
class DicomImage:
    """A decoded image in modality units where a higher value always means denser.

    `pixels` is float32 shaped (frames, rows, columns) (smaller by `reduction`) and read-only.
    MONOCHROME1 data has been inverted within its value range, and colour data converted to
    luminance; both are recorded so that nothing about the conversion is hidden.
    """

    info: InstanceInfo
    pixels: np.ndarray = field(compare=False, repr=False)
    value_range: tuple[float, float]
    """The representable range in output units (from Bits Stored and the rescale)."""
    inverted: bool
    color_converted: bool
    windows: tuple[Window, ...]
    voi_lut_function: str | None
    reduction: int = 0
    """0: `pixels` are rows x columns. r > 0: a JPEG 2000 image decoded only to the resolution
    level 1/2**r of that (ceil(rows / 2**r) x ceil(columns / 2**r)), because the consumer
    (the model) needed no more; see `pixels.decode_image`'s `min_size`."""

    @property
    def uids(self) -> InstanceUids:
        return self.info.uids

    def summary(self) -> dict[str, Any]:
        """JSON-ready description: header facts, conversions applied and pixel statistics."""
        pixels = self.pixels
        out = self.info.summary()
        out.update(
            {
                "value_range": list(self.value_range),
                "inverted_monochrome1": self.inverted,
                "color_converted": self.color_converted,
                "windows": [
                    {"center": w.center, "width": w.width, "explanation": w.explanation}
                    for w in self.windows
                ],
                "voi_lut_function": self.voi_lut_function,
                "pixel_stats": {
                    "min": float(pixels.min()),
                    "max": float(pixels.max()),
                    "mean": float(pixels.mean()),
                },
            }
        )
        return out
