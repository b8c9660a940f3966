"""A flagged finding that is not localised (no box: `results.localised`) is still reported, but
no output draws a region for it: no TID 1410 region in the SR, no box in the presentation state
(its label says "not localised"), and the overlay stays valid."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pydicom
from pydicom.uid import generate_uid

from diagnostics.reports import build_presentation_state, build_sr
from diagnostics.screening.outcome import ScreeningOutcome
from tests.reports.cases import Case, make_outcome, report_of
from tests.validators import dciodvfy


def _unlocalised(case: Case) -> ScreeningOutcome:
    """The case's nodule flagged at 0.93 but its box dropped, as screening drops a box that
    covers most of the image."""
    outcome = make_outcome(
        case.outcome.analysed[0].image,
        case.package,
        {"nodule": 0.93, "consolidation": 0.21, "cardiomegaly": 0.35},
    )
    findings = [
        f.model_copy(update={"bbox": None}) if f.flagged else f for f in outcome.result.findings
    ]
    assert any(f.flagged for f in findings)
    result = outcome.result.model_copy(update={"findings": findings})
    return dataclasses.replace(outcome, result=result)


def test_sr_has_no_region_for_a_finding_that_is_not_localised(case: Case, tmp_path: Path) -> None:
    outcome = _unlocalised(case)
    dataset = build_sr(outcome, series_number=42, instance_number=3)
    path = tmp_path / "sr.dcm"
    dataset.save_as(path, enforce_file_format=True)
    assert dciodvfy(path).errors == []
    report = report_of(path)
    assert report.get_planar_roi_measurement_groups() == []
    assert len(report.get_image_measurement_groups()) == len(outcome.result.findings)


def test_presentation_state_names_it_without_a_box(case: Case, tmp_path: Path) -> None:
    outcome = _unlocalised(case)
    state = build_presentation_state(
        outcome, outcome.analysed[0], series_uid=generate_uid(), instance_number=1
    )
    path = tmp_path / "pr.dcm"
    state.save_as(path, enforce_file_format=True)
    assert dciodvfy(path).errors == []
    state = pydicom.dcmread(path)
    graphics = [
        g for a in state.GraphicAnnotationSequence for g in a.get("GraphicObjectSequence", [])
    ]
    texts = [
        t.UnformattedTextValue
        for a in state.GraphicAnnotationSequence
        for t in a.TextObjectSequence
    ]
    assert graphics == []
    assert "Lung nodule 0.93 (not localised)" in texts
