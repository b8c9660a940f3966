"""The presentation state: valid GSPS over the original image, with boxes, labels and notice."""

from __future__ import annotations

import numpy as np
import pydicom

from diagnostics.reports import DISCLAIMER
from tests.reports.cases import BLOB_BOX, Written, source_header
from tests.validators import dciodvfy


def test_presentation_state_passes_dciodvfy_without_errors_or_warnings(written: Written) -> None:
    verdict = dciodvfy(written.state)
    assert verdict.errors == []
    assert verdict.warnings == []


def test_presentation_state_references_the_original_image(written: Written) -> None:
    state = pydicom.dcmread(written.state)
    source = source_header(written.case)
    assert state.SOPClassUID == pydicom.uid.GrayscaleSoftcopyPresentationStateStorage
    assert state.StudyInstanceUID == source.StudyInstanceUID
    assert state.PatientID == source.PatientID
    assert state.SeriesInstanceUID != source.SeriesInstanceUID
    (series,) = state.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    (image,) = series.ReferencedImageSequence
    assert image.ReferencedSOPInstanceUID == source.SOPInstanceUID


def test_presentation_state_keeps_the_source_window_and_polarity(written: Written) -> None:
    state = pydicom.dcmread(written.state)
    source = source_header(written.case)
    (voi,) = state.SoftcopyVOILUTSequence
    assert float(voi.WindowCenter) == float(source.WindowCenter)
    assert float(voi.WindowWidth) == float(source.WindowWidth)
    assert voi.WindowCenterWidthExplanation == source.WindowCenterWidthExplanation
    inverse = source.PhotometricInterpretation == "MONOCHROME1"
    assert state.PresentationLUTShape == ("INVERSE" if inverse else "IDENTITY")


def test_flagged_box_label_and_notice_are_drawn(written: Written) -> None:
    state = pydicom.dcmread(written.state)
    graphics = [
        g for a in state.GraphicAnnotationSequence for g in a.get("GraphicObjectSequence", [])
    ]
    texts = [
        t.UnformattedTextValue
        for a in state.GraphicAnnotationSequence
        for t in a.TextObjectSequence
    ]
    (box,) = graphics
    assert box.GraphicType == "POLYLINE"
    assert box.GraphicAnnotationUnits == "PIXEL"
    x0, y0, x1, y1 = BLOB_BOX
    expected = [x0, y0, x1, y0, x1, y1, x0, y1, x0, y0]
    np.testing.assert_array_equal(np.asarray(box.GraphicData, dtype=float), expected)
    assert "Lung nodule 0.93" in texts
    manifest = written.case.package.manifest
    assert f"{DISCLAIMER} - {manifest.name} {manifest.version}" in texts
    layers = {layer.GraphicLayer for layer in state.GraphicLayerSequence}
    assert {a.GraphicLayer for a in state.GraphicAnnotationSequence} <= layers


def test_presentation_state_names_the_model(written: Written) -> None:
    manifest = written.case.package.manifest
    state = pydicom.dcmread(written.state)
    assert manifest.sha256 in state.SoftwareVersions
    assert f"{manifest.name} {manifest.version}" in state.SoftwareVersions
    assert state.ManufacturerModelName == manifest.name
    assert DISCLAIMER in state.ContentDescription
