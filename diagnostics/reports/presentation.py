"""The findings as a Grayscale Softcopy Presentation State over the original image.

Unlike the burned-in overlay, the presentation state leaves the source pixels untouched: a viewer
that supports GSPS draws the boxes and labels as vector graphics on their own layer, under the
source's own window, and a radiologist can switch them off.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from diagnostics.package import Manifest
from diagnostics.reports._common import (
    DISCLAIMER,
    MANUFACTURER,
    building,
    checked_bbox,
    copy_series_anatomy,
    finding_label,
    fit_lo,
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
    list of its characters.
    """
    centers = [float(str(v)) for v in _as_list(header.get("WindowCenter"))]
    widths = [float(str(v)) for v in _as_list(header.get("WindowWidth"))]
    if not centers or len(centers) != len(widths) or min(widths) <= 0:
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
    frame = item.frame + 1 if item.image.info.frames > 1 else None
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
        mono1 = item.image.info.photometric_interpretation == "MONOCHROME1"
        state = hd.pr.GrayscaleSoftcopyPresentationState(
            referenced_images=[header],
            series_instance_uid=series_uid,
            series_number=series_number,
            sop_instance_uid=generate_uid(),
            instance_number=instance_number,
            manufacturer=MANUFACTURER,
            manufacturer_model_name=manifest.name,
            software_versions=model_label(manifest),
            device_serial_number=manifest.sha256,
            content_label="AI_PRESCREENING",
            content_description=fit_lo(f"{DISCLAIMER} ({model_label(manifest)})"),
            graphic_annotations=annotations,
            graphic_layers=[findings_layer, notice_layer],
            voi_lut_transformations=_voi_transformations(header),
            presentation_lut_transformation=hd.PresentationLUTTransformation(
                presentation_lut_shape=hd.PresentationLUTShapeValues.INVERSE
                if mono1
                else hd.PresentationLUTShapeValues.IDENTITY
            ),
            series_description=fit_lo(f"AI pre-screening annotations ({model_label(manifest)})"),
        )
    _describe_state(state, header, manifest)
    return state


def _describe_state(state: Dataset, header: Dataset, manifest: Manifest) -> None:
    state.SoftwareVersions = software_versions(manifest)
    copy_series_anatomy(header, state)
