"""The findings as a Softcopy Presentation State over the original image.

Unlike the burned-in overlay, the presentation state leaves the source pixels untouched: a viewer
that supports presentation states draws the boxes and labels as vector graphics on their own
layer, under the source's own window, and a radiologist can switch them off. A greyscale source
gets a Grayscale Softcopy Presentation State; a colour one (a digitised film, an ultrasound) a
Color Softcopy Presentation State with an sRGB profile, the only kind DICOM allows over colour.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

import highdicom as hd
import numpy as np
from highdicom._standard_utils import is_attribute_in_iod  # private: the IOD tables it builds with
from PIL import ImageCms
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from diagnostics.constants import MANUFACTURER
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
    notice_text,
    rectangle,
    require_package,
    shown_findings,
    software_versions,
    source_header,
)

if TYPE_CHECKING:
    from diagnostics.screening.outcome import AnalysedInstance, ScreeningOutcome

PRESENTATION_SERIES_NUMBER = 9003


def _label_box(
    bbox: tuple[int, int, int, int], text: str, rows: int, cols: int
) -> tuple[float, float, float, float]:
    """Where a box's label goes, in pixels: above the box, or inside its top when no room."""
    x0, y0, x1, _ = bbox
    height = max(12.0, min(rows, cols) / 40.0) * 1.5
    width = min(float(cols - x0), max(float(x1 - x0), 0.6 * height * len(text)))
    if y0 >= height:
        return (float(x0), y0 - height, x0 + width, float(y0))
    return (float(x0), float(y0), x0 + width, min(float(rows), y0 + height))


def _as_list(value: object) -> list[object]:
    if value is None:
        return []
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        return [value]
    return list(value)


def _voi_transformations(header: Dataset) -> list[hd.pr.SoftcopyVOILUTTransformation] | None:
    """The source's windows as the presentation state's VOI LUT, or None to let highdicom copy
    whatever other VOI the source has.

    Windows are always passed as lists: highdicom 0.28 turns a single explanation string into a
    list of its characters. Windows that cannot be used (a centre without its width, a width of
    0) are removed from `header`, so that highdicom does not copy them either.
    """
    centers = [float(str(v)) for v in _as_list(header.get("WindowCenter"))]
    widths = [float(str(v)) for v in _as_list(header.get("WindowWidth"))]
    if not centers or len(centers) != len(widths) or min(widths) <= 0:
        for keyword in ("WindowCenter", "WindowWidth", "WindowCenterWidthExplanation"):
            if keyword in header:
                delattr(header, keyword)
        return None
    explanations = [str(v) for v in _as_list(header.get("WindowCenterWidthExplanation"))]
    function = header.get("VOILUTFunction")
    return [
        hd.pr.SoftcopyVOILUTTransformation(
            window_center=centers,
            window_width=widths,
            window_explanation=explanations if len(explanations) == len(centers) else None,
            voi_lut_function=str(function) if function else None,
        )
    ]


def build_presentation_state(
    outcome: ScreeningOutcome,
    analysed_instance: AnalysedInstance,
    *,
    series_uid: str,
    instance_number: int,
    series_number: int = PRESENTATION_SERIES_NUMBER,
) -> Dataset:
    """A Grayscale Softcopy Presentation State drawing the findings over the original image.

    Flagged findings with a box get a POLYLINE rectangle and a label; an instance without one
    gets its most probable finding as text. The notice is always drawn, in display units.
    """
    manifest = require_package(outcome).manifest
    item = analysed_instance
    header = source_header(item)
    rows, cols = item.image.info.rows, item.image.info.columns
    frames = frame_numbers(item)
    frame = frames[0] if frames else None
    with building("presentation state"):
        findings_layer = hd.pr.GraphicLayer(
            layer_name="AI_FINDINGS", order=1, description="AI pre-screening findings"
        )
        notice_layer = hd.pr.GraphicLayer(layer_name="AI_NOTICE", order=2, description=DISCLAIMER)
        graphics: list[hd.pr.GraphicObject] = []
        texts: list[hd.pr.TextObject] = []
        shown = shown_findings(outcome, item)
        for finding in shown:
            if not finding.flagged or finding.bbox is None:
                continue
            bbox = checked_bbox(finding, item)
            tracking = (finding.code, str(generate_uid()))
            graphics.append(
                hd.pr.GraphicObject(
                    graphic_type=hd.pr.GraphicTypeValues.POLYLINE,
                    graphic_data=rectangle(bbox),
                    units=hd.pr.AnnotationUnitsValues.PIXEL,
                    tracking_id=tracking[0],
                    tracking_uid=tracking[1],
                )
            )
            label = finding_label(finding)
            texts.append(
                hd.pr.TextObject(
                    text_value=label,
                    units=hd.pr.AnnotationUnitsValues.PIXEL,
                    bounding_box=_label_box(bbox, label, rows, cols),
                    text_justification=hd.pr.TextJustificationValues.LEFT,
                    tracking_id=tracking[0],
                    tracking_uid=tracking[1],
                )
            )
        notices = [notice_text(manifest)]
        notices += [
            f"{finding_label(f)} (below the operating point {f.threshold:.2f})"
            for f in shown
            if not f.flagged
        ]
        notices += [
            f"{finding_label(f)} (not localised)" for f in shown if f.flagged and not f.bbox
        ]
        notice_objects = [
            hd.pr.TextObject(
                text_value=text,
                units=hd.pr.AnnotationUnitsValues.DISPLAY,
                bounding_box=(0.01, 0.01 + 0.05 * i, 0.8, 0.05 + 0.05 * i),
                text_justification=hd.pr.TextJustificationValues.LEFT,
            )
            for i, text in enumerate(notices)
        ]
        annotations = [
            hd.pr.GraphicAnnotation(
                referenced_images=[header],
                graphic_layer=notice_layer,
                referenced_frame_number=frame,
                text_objects=notice_objects,
            )
        ]
        if graphics:
            annotations.insert(
                0,
                hd.pr.GraphicAnnotation(
                    referenced_images=[header],
                    graphic_layer=findings_layer,
                    referenced_frame_number=frame,
                    graphic_objects=graphics,
                    text_objects=texts,
                ),
            )
        common: dict[str, Any] = {
            "referenced_images": [header],
            "series_instance_uid": series_uid,
            "series_number": series_number,
            "sop_instance_uid": generate_uid(),
            "instance_number": instance_number,
            "manufacturer": MANUFACTURER,
            "manufacturer_model_name": manifest.name,
            "software_versions": model_label(manifest),
            "device_serial_number": manifest.sha256,
            "content_label": "AI_PRESCREENING",
            "content_description": fit_lo(f"{DISCLAIMER} ({model_label(manifest)})"),
            "graphic_annotations": annotations,
            "graphic_layers": [findings_layer, notice_layer],
            "series_description": fit_lo(f"AI pre-screening annotations ({model_label(manifest)})"),
        }
        state: Dataset
        if item.image.info.samples_per_pixel == 3:
            state = hd.pr.ColorSoftcopyPresentationState(**common, icc_profile=_srgb_profile())
        else:
            mono1 = item.image.info.photometric_interpretation == "MONOCHROME1"
            voi = _voi_transformations(header)
            if _legacy_multiframe(header):
                common["modality_lut_transformation"] = _modality_lut(header)
                voi = voi or _window_of_frame(item)
            state = hd.pr.GrayscaleSoftcopyPresentationState(
                **common,
                voi_lut_transformations=voi,
                presentation_lut_transformation=hd.PresentationLUTTransformation(
                    presentation_lut_shape=hd.PresentationLUTShapeValues.INVERSE
                    if mono1
                    else hd.PresentationLUTShapeValues.IDENTITY
                ),
            )
    _describe_state(state, header, manifest)
    return state


@cache
def _srgb_profile() -> bytes:
    """An sRGB ICC profile, built by Little CMS: a colour presentation state must carry one.

    Little CMS makes it a display ("mntr") profile; DICOM wants the profile of the pixel data,
    an input ("scnr") one, so the device class is set to that and the optional profile ID, a
    checksum of the header it no longer matches, is cleared.
    """
    profile = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    profile[12:16] = b"scnr"
    profile[84:100] = bytes(16)
    return bytes(profile)


def _legacy_multiframe(header: Dataset) -> bool:
    """A multi-frame IOD without functional groups (multi-frame SC, US, NM, XA): highdicom reads
    its modality LUT and VOI from functional groups only, so they are given to it explicitly."""
    return (
        is_attribute_in_iod("NumberOfFrames", str(header.SOPClassUID))
        and "SharedFunctionalGroupsSequence" not in header
    )


def _modality_lut(header: Dataset) -> hd.ModalityLUTTransformation:
    """The source's rescale (identity when it has none), as its Modality LUT module says."""
    slope = float(str(header.get("RescaleSlope") or 1))
    intercept = float(str(header.get("RescaleIntercept") or 0))
    rescale_type = str(header.get("RescaleType") or "US")
    if rescale_type not in {v.value for v in hd.RescaleTypeValues}:
        rescale_type = "US"
    return hd.ModalityLUTTransformation(
        rescale_intercept=intercept, rescale_slope=slope, rescale_type=rescale_type
    )


def _window_of_frame(item: AnalysedInstance) -> list[hd.pr.SoftcopyVOILUTTransformation]:
    """A window over the analysed frame's 1st to 99th percentile, in modality units (undoing
    the reader's MONOCHROME1 inversion), for a source that has no usable window of its own."""
    pixels = item.image.pixels[item.frame]
    step = max(1, max(pixels.shape) // 1024)
    low, high = (float(v) for v in np.percentile(pixels[::step, ::step], [1.0, 99.0]))
    if item.image.inverted:
        total = sum(item.image.value_range)
        low, high = total - high, total - low
    return [
        hd.pr.SoftcopyVOILUTTransformation(
            window_center=[(low + high) / 2.0], window_width=[max(1.0, high - low)]
        )
    ]


def _describe_state(state: Dataset, header: Dataset, manifest: Manifest) -> None:
    state.SoftwareVersions = software_versions(manifest)
    copy_series_anatomy(header, state)
