"""Images a radiologist can open in any PACS viewer: a burned-in overlay and a presentation state.

The overlay is a Secondary Capture (RGB, 8 bits): the source image windowed for display, the
class activation heatmap blended over it, each flagged finding's box with its label and
probability, and a burned-in notice that this is AI pre-screening. Because it is burned in, it
survives viewers that show nothing else. A source larger than `MAX_OVERLAY_SIDE` pixels on its
long side is drawn downscaled to that size, so that the overlay's memory and file size stay
bounded whatever the detector (the SR and presentation state keep source coordinates). The
presentation state (`presentation.py`, re-exported here) draws the same boxes and labels as
vector graphics over the original pixels, for viewers that support it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import highdicom as hd
import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from diagnostics.constants import MANUFACTURER
from diagnostics.dicom.image import DicomImage
from diagnostics.errors import ReportError
from diagnostics.package import Manifest
from diagnostics.reports._common import (
    DISCLAIMER,
    building,
    checked_bbox,
    copy_series_anatomy,
    finding_label,
    fit_lo,
    frame_numbers,
    model_label,
    require_package,
    shown_findings,
    software_versions,
    source_header,
)
from diagnostics.reports._header import patient_orientation
from diagnostics.reports.heatmap import heatmap
from diagnostics.reports.presentation import (
    PRESENTATION_SERIES_NUMBER,
    build_presentation_state,
)
from diagnostics.results import FindingResult

if TYPE_CHECKING:
    from diagnostics.screening.outcome import AnalysedInstance, ScreeningOutcome

__all__ = [
    "OVERLAY_SERIES_NUMBER",
    "PRESENTATION_SERIES_NUMBER",
    "build_overlay",
    "build_presentation_state",
    "render_overlay",
    "window_to_uint8",
]

OVERLAY_SERIES_NUMBER = 9002
MAX_OVERLAY_SIDE = 2048
"""Longest side of an overlay in pixels; larger sources are downscaled to it."""
_CHUNK_ROWS = 512

HEAT_ALPHA = 0.55
"""Opacity of the heatmap where the evidence is strongest; it fades to nothing at neutral."""
BOX_COLOUR = (0, 255, 255)
NOTICE_COLOUR = (255, 255, 0)
TEXT_BACKGROUND = (0, 0, 0)
_Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def window_to_uint8(image: DicomImage, frame: int = 0) -> np.ndarray:
    """One frame as 8-bit grey for display, denser brighter (MONOCHROME2 convention).

    Uses the image's first VOI window (already in the decoded, MONOCHROME1-inverted units); an
    image without one is stretched between its 1st and 99th percentiles, estimated on a grid of
    about a million pixels. Works in blocks of rows, so that a large image needs no float copy.
    """
    pixels = image.pixels[frame]
    if image.windows:
        window = image.windows[0]
        low = window.center - window.width / 2.0
        high = window.center + window.width / 2.0
    else:
        step = max(1, max(pixels.shape) // 1024)
        sample = np.asarray(pixels[::step, ::step], dtype=np.float64)
        low, high = (float(v) for v in np.percentile(sample, [1.0, 99.0]))
    if not high > low:
        high = low + 1.0
    grey = np.empty(pixels.shape, dtype=np.uint8)
    for start in range(0, pixels.shape[0], _CHUNK_ROWS):
        block = np.asarray(pixels[start : start + _CHUNK_ROWS], dtype=np.float64)
        scaled = np.clip((block - low) / (high - low), 0.0, 1.0)
        grey[start : start + _CHUNK_ROWS] = np.round(scaled * 255.0)
    return grey


def overlay_size(rows: int, cols: int) -> tuple[int, int]:
    """(rows, cols) of the overlay of a rows x cols source: the same, or downscaled to fit
    `MAX_OVERLAY_SIDE` with its aspect ratio kept."""
    scale = min(1.0, MAX_OVERLAY_SIDE / max(rows, cols))
    return max(1, round(rows * scale)), max(1, round(cols * scale))


def _combined_heat(
    manifest: Manifest, item: AnalysedInstance, findings: list[FindingResult], rows: int, cols: int
) -> np.ndarray:
    codes_in_order = manifest.finding_codes
    if item.cams.ndim != 3 or item.cams.shape[0] != len(codes_in_order):
        raise ReportError(
            f"instance {item.image.uids.sop_instance_uid}: class activation maps of shape "
            f"{item.cams.shape} do not match the model's {len(codes_in_order)} findings"
        )
    heat = np.zeros((rows, cols), dtype=np.float32)
    for finding in findings:
        k = codes_in_order.index(finding.code)
        heat = np.maximum(heat, heatmap(item.cams[k], rows, cols))
    return heat


def _blend(grey: np.ndarray, heat: np.ndarray) -> np.ndarray:
    """Grey image with a red-to-yellow tint where the heatmap shows positive evidence (> 0.5)."""
    strength = np.clip((heat.astype(np.float32) - 0.5) / 0.5, 0.0, 1.0)
    alpha = (HEAT_ALPHA * strength)[..., None]
    colour = np.stack([np.ones_like(strength), strength, np.zeros_like(strength)], axis=-1) * 255.0
    base = np.repeat(grey[..., None].astype(np.float32), 3, axis=-1)
    blended: np.ndarray = np.round(base * (1.0 - alpha) + colour * alpha).astype(np.uint8)
    return blended


def _font(rows: int, cols: int) -> _Font:
    return ImageFont.load_default(size=max(10, min(rows, cols) // 40))


def _text_block(draw: ImageDraw.ImageDraw, xy: tuple[int, int], text: str, font: _Font) -> None:
    """Text on an opaque dark background, legible over any part of the image."""
    left, top, right, bottom = draw.textbbox(xy, text, font=font)
    pad = 2
    draw.rectangle((left - pad, top - pad, right + pad, bottom + pad), fill=TEXT_BACKGROUND)
    draw.text(xy, text, fill=NOTICE_COLOUR, font=font)


def render_overlay(outcome: ScreeningOutcome, item: AnalysedInstance) -> np.ndarray:
    """The overlay's RGB pixels (rows, cols, 3) uint8: the source's size, or `overlay_size`."""
    manifest = require_package(outcome).manifest
    source_rows, source_cols = item.image.info.rows, item.image.info.columns
    rows, cols = overlay_size(source_rows, source_cols)
    grey = window_to_uint8(item.image, item.frame)
    if (rows, cols) != grey.shape:
        grey = np.asarray(Image.fromarray(grey).resize((cols, rows), Image.Resampling.BOX))
    shown = shown_findings(outcome, item)
    rgb = _blend(grey, _combined_heat(manifest, item, shown, rows, cols))
    canvas = Image.fromarray(rgb, mode="RGB")
    draw = ImageDraw.Draw(canvas)
    font = _font(rows, cols)
    line = max(2, min(rows, cols) // 256)
    sx, sy = cols / source_cols, rows / source_rows
    for finding in shown:
        if not finding.flagged or finding.bbox is None:
            continue
        bx0, by0, bx1, by1 = checked_bbox(finding, item)
        x0, y0 = int(bx0 * sx), int(by0 * sy)
        x1, y1 = max(x0 + 1, round(bx1 * sx)), max(y0 + 1, round(by1 * sy))
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), outline=BOX_COLOUR, width=line)
        label = finding_label(finding)
        height = int(draw.textbbox((0, 0), label, font=font)[3])
        _text_block(draw, (x0 + 2, y0 - height - 4 if y0 > height + 4 else y1 + 4), label, font)
    _text_block(draw, (4, 4), DISCLAIMER, font)
    step = int(draw.textbbox((0, 0), DISCLAIMER, font=font)[3]) + 6
    _text_block(draw, (4, 4 + step), model_label(manifest), font)
    unplaced = [finding_label(f) for f in shown if f.flagged and f.bbox is None]
    if unplaced:  # flagged, but the activation was too spread out to box (results.localised)
        text = "; ".join(unplaced) + " (not localised)"
        _text_block(draw, (4, 4 + 2 * step), text, font)
    return np.asarray(canvas, dtype=np.uint8)


def _derivation(manifest: Manifest, item: AnalysedInstance, size: tuple[int, int]) -> str:
    source = (item.image.info.rows, item.image.info.columns)
    scaled = "" if size == source else f" downscaled from {source[1]} x {source[0]} pixels,"
    return (
        f"{DISCLAIMER}. Source image windowed to 8 bits,{scaled} with the class activation "
        f"heatmap and finding boxes of {model_label(manifest)} (model.onnx sha256 "
        f"{manifest.sha256}) burned in."
    )


def _source_reference(item: AnalysedInstance) -> Dataset:
    """Source Image Sequence item: the instance the overlay was derived from."""
    source = Dataset()
    source.ReferencedSOPClassUID = item.image.uids.sop_class_uid
    source.ReferencedSOPInstanceUID = item.image.uids.sop_instance_uid
    frames = frame_numbers(item)
    if frames:
        source.ReferencedFrameNumber = frames
    purpose = Dataset()
    purpose.CodeValue = codes.DCM.SourceImageForImageProcessingOperation.value
    purpose.CodingSchemeDesignator = "DCM"
    purpose.CodeMeaning = codes.DCM.SourceImageForImageProcessingOperation.meaning
    source.PurposeOfReferenceCodeSequence = [purpose]
    return source


def _describe_overlay(
    overlay: Dataset, header: Dataset, item: AnalysedInstance, manifest: Manifest
) -> None:
    """What highdicom leaves out: burned-in text, provenance, model identity, orientation."""
    overlay.PatientOrientation = patient_orientation(header) or ""
    overlay.SoftwareVersions = software_versions(manifest)
    overlay.SecondaryCaptureDeviceManufacturer = MANUFACTURER
    overlay.SecondaryCaptureDeviceManufacturerModelName = manifest.name
    overlay.SecondaryCaptureDeviceSoftwareVersions = software_versions(manifest)
    overlay.BurnedInAnnotation = "YES"
    overlay.LossyImageCompression = "00"
    derivation = _derivation(manifest, item, (overlay.Rows, overlay.Columns))
    overlay.DerivationDescription = derivation
    overlay.ImageComments = derivation
    overlay.SourceImageSequence = [_source_reference(item)]
    copy_series_anatomy(header, overlay)


def build_overlay(
    outcome: ScreeningOutcome,
    analysed_instance: AnalysedInstance,
    *,
    series_uid: str,
    instance_number: int,
    series_number: int = OVERLAY_SERIES_NUMBER,
) -> Dataset:
    """A Secondary Capture RGB overlay of one analysed instance, in a new series of its study."""
    manifest = require_package(outcome).manifest
    item = analysed_instance
    header = source_header(item)
    pixels = render_overlay(outcome, item)
    with building("overlay image"):
        overlay = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=header,
            pixel_array=pixels,
            photometric_interpretation=hd.PhotometricInterpretationValues.RGB,
            bits_allocated=8,
            coordinate_system=hd.CoordinateSystemNames.PATIENT,
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=generate_uid(),
            instance_number=instance_number,
            manufacturer=MANUFACTURER,
            # Required by highdicom for a patient image; replaced below by the source's own
            # value (or an empty one), which need not be a pair of single letters.
            patient_orientation=("L", "F"),
            transfer_syntax_uid=ExplicitVRLittleEndian,
            series_description=fit_lo(f"AI pre-screening overlay ({model_label(manifest)})"),
            manufacturer_model_name=manifest.name,
        )
    _describe_overlay(overlay, header, item, manifest)
    return overlay
