"""The burned-in overlay: valid Secondary Capture, right pixels, and the notice visible."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from diagnostics.errors import ReportError
from diagnostics.reports import build_overlay, window_to_uint8
from diagnostics.reports.overlay import NOTICE_COLOUR, TEXT_BACKGROUND, render_overlay
from tests.reports.cases import (
    BLOB_BOX,
    SIZE,
    Case,
    Written,
    make_outcome,
    source_header,
)
from tests.validators import dciodvfy

FAR = (slice(SIZE * 5 // 8, SIZE), slice(SIZE * 5 // 8, SIZE))
"""Lower right of the image: far from the blob, the box and the notice."""


def _pixels(written: Written) -> np.ndarray:
    return np.asarray(pydicom.dcmread(written.overlay).pixel_array)


def _grey(written: Written) -> np.ndarray:
    item = written.case.outcome.analysed[0]
    return window_to_uint8(item.image, item.frame)


def _count(region: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int(np.all(region == np.array(colour, dtype=np.uint8), axis=-1).sum())


def _text_pixels(region: np.ndarray) -> int:
    """Pixels of the (anti-aliased) notice colour: saturated, so never from the grey image."""
    r, g, b = (region[..., i].astype(np.int16) for i in range(3))
    target = np.array(NOTICE_COLOUR)
    return int(((np.abs(r - target[0]) < 40) & (np.abs(g - target[1]) < 40) & (b < 60)).sum())


def test_overlay_passes_dciodvfy_without_errors_or_warnings(written: Written) -> None:
    verdict = dciodvfy(written.overlay)
    assert verdict.errors == []
    assert verdict.warnings == []


def test_overlay_is_an_rgb_secondary_capture_in_a_new_series(written: Written) -> None:
    overlay = pydicom.dcmread(written.overlay)
    source = source_header(written.case)
    assert overlay.SOPClassUID == pydicom.uid.SecondaryCaptureImageStorage
    assert (overlay.Rows, overlay.Columns) == (source.Rows, source.Columns)
    assert overlay.SamplesPerPixel == 3
    assert overlay.PhotometricInterpretation == "RGB"
    assert overlay.BitsAllocated == 8
    assert overlay.BurnedInAnnotation == "YES"
    assert overlay.StudyInstanceUID == source.StudyInstanceUID
    assert overlay.PatientID == source.PatientID
    assert overlay.SeriesInstanceUID != source.SeriesInstanceUID
    assert overlay.PatientOrientation == source.PatientOrientation
    (reference,) = overlay.SourceImageSequence
    assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
    image = hd.imread(written.overlay)
    assert image.pixel_array.shape == (source.Rows, source.Columns, 3)


def test_overlay_names_the_model(written: Written) -> None:
    manifest = written.case.package.manifest
    overlay = pydicom.dcmread(written.overlay)
    assert manifest.sha256 in overlay.SoftwareVersions
    assert f"{manifest.name} {manifest.version}" in overlay.SoftwareVersions
    assert manifest.sha256 in overlay.DerivationDescription
    assert "AI pre-screening, not for diagnosis" in overlay.DerivationDescription
    assert "AI pre-screening" in overlay.SeriesDescription


def test_heatmap_is_drawn_inside_the_flagged_box(written: Written) -> None:
    pixels, grey = _pixels(written), _grey(written)
    x0, y0, x1, y1 = BLOB_BOX
    inside = (slice(y0 + 6, y1 - 6), slice(x0 + 6, x1 - 6))
    region = pixels[inside].astype(np.int16)
    plain = grey[inside].astype(np.int16)
    assert np.abs(region - plain[..., None]).mean() > 10
    assert (region[..., 0] - region[..., 2]).mean() > 20  # tinted red to yellow


def test_image_is_untouched_far_from_findings(written: Written) -> None:
    pixels, grey = _pixels(written), _grey(written)
    for channel in range(3):
        np.testing.assert_array_equal(pixels[FAR][..., channel], grey[FAR])


def test_denser_is_brighter_whatever_the_photometric_interpretation(written: Written) -> None:
    source = pydicom.dcmread(written.case.sources[0])
    stored = np.asarray(source.pixel_array, dtype=np.float64)[FAR].ravel()
    shown = _pixels(written)[FAR][..., 0].astype(np.float64).ravel()
    correlation = float(np.corrcoef(stored, shown)[0, 1])
    if source.PhotometricInterpretation == "MONOCHROME1":
        assert correlation < -0.5  # low stored values are dense, shown bright
    else:
        assert correlation > 0.5


def test_notice_and_label_are_burned_in(written: Written) -> None:
    pixels = _pixels(written)
    banner = pixels[: SIZE // 8, : SIZE // 2]
    assert _text_pixels(banner) > 100
    assert _count(banner, TEXT_BACKGROUND) > 200
    x0, y0, x1, _ = BLOB_BOX
    above_box = pixels[max(0, y0 - 24) : y0, x0 : min(SIZE, x1 + 60)]
    assert _text_pixels(above_box) > 30


def test_overlay_without_flags_shows_the_most_probable_finding(case: Case, tmp_path: Path) -> None:
    nodule = case.package.manifest.operating_points["nodule"].threshold * 0.9
    # The most probable finding is the nodule, and nothing reaches its operating point.
    low = {"nodule": nodule, "consolidation": nodule * 0.7, "cardiomegaly": nodule * 0.4}
    outcome = make_outcome(case.outcome.analysed[0].image, case.package, low)
    item = outcome.analysed[0]
    pixels = render_overlay(outcome, item)
    grey = window_to_uint8(item.image, item.frame)
    x0, y0, x1, y1 = BLOB_BOX
    inside = (slice(y0 + 6, y1 - 6), slice(x0 + 6, x1 - 6))
    assert (pixels[inside][..., 0].astype(int) - pixels[inside][..., 2]).mean() > 20
    assert _count(pixels[y0:y1, x0:x1], (0, 255, 255)) == 0  # no box for unflagged findings
    dataset = build_overlay(outcome, item, series_uid=str(generate_uid()), instance_number=2)
    path = tmp_path / "overlay.dcm"
    dataset.save_as(path, enforce_file_format=True)
    assert dciodvfy(path).errors == []
    assert np.array_equal(pixels[FAR][..., 1], grey[FAR])


def test_maps_that_do_not_match_the_model_are_refused(case: Case) -> None:
    item = case.outcome.analysed[0]
    wrong = dataclasses.replace(item, cams=item.cams[:2])
    outcome = dataclasses.replace(case.outcome, analysed=(wrong,))
    with pytest.raises(ReportError, match="do not match"):
        build_overlay(outcome, wrong, series_uid=str(generate_uid()), instance_number=1)
