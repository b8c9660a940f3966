"""The TID 1500 structured report: valid DICOM, and saying exactly what the StudyResult says."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from diagnostics.errors import ReportError
from diagnostics.reports import DISCLAIMER, build_sr
from diagnostics.results import StudyResult
from tests.reports.cases import (
    BLOB_BOX,
    Case,
    Written,
    make_outcome,
    report_of,
    source_header,
    texts_in,
)
from tests.validators import dciodvfy


def test_sr_passes_dciodvfy_without_errors_or_warnings(written: Written) -> None:
    verdict = dciodvfy(written.sr)
    assert verdict.errors == []
    assert verdict.warnings == []


def test_sr_reads_back_as_a_comprehensive_sr(written: Written) -> None:
    sr = hd.sr.srread(written.sr)
    assert isinstance(sr, hd.sr.ComprehensiveSR)
    assert isinstance(sr.content, hd.sr.MeasurementReport)
    assert sr.SOPClassUID == pydicom.uid.ComprehensiveSRStorage


def test_sr_is_a_new_series_of_the_same_study_and_patient(written: Written) -> None:
    sr = pydicom.dcmread(written.sr)
    source = source_header(written.case)
    assert sr.StudyInstanceUID == source.StudyInstanceUID
    assert sr.PatientID == source.PatientID
    assert sr.PatientName == source.PatientName
    assert sr.AccessionNumber == source.AccessionNumber
    assert sr.SeriesInstanceUID != source.SeriesInstanceUID
    assert sr.SOPInstanceUID != source.SOPInstanceUID
    assert sr.Modality == "SR"
    assert "AI pre-screening" in sr.SeriesDescription


def _groups(report: hd.sr.MeasurementReport) -> dict[str, Any]:
    groups = [*report.get_planar_roi_measurement_groups(), *report.get_image_measurement_groups()]
    return {group.finding_type.value: group for group in groups if group.finding_type}


def test_every_finding_has_its_code_probability_and_flag(written: Written) -> None:
    manifest = written.case.package.manifest
    groups = _groups(report_of(written.sr))
    result = written.case.outcome.result
    assert len(groups) == len(result.findings)
    for finding in result.findings:
        concept = next(s.concept for s in manifest.findings if s.code == finding.code)
        group = groups[concept.value]
        assert group.finding_type.scheme_designator == concept.scheme
        assert group.finding_type.meaning == concept.meaning
        (measurement,) = group.get_measurements()
        assert measurement.name.value == "122157"
        assert measurement.value == pytest.approx(finding.probability, rel=1e-12)
        assert group.get_qualitative_evaluations() == []  # no such row in TID 1410/1501
        decision = _decisions(pydicom.dcmread(written.sr))[concept.value]
        assert decision == ("111150" if finding.flagged else "111151")


def _decisions(sr: pydicom.Dataset) -> dict[str, str]:
    """Report-level Qualitative Evaluations (TID 1500 row 13): finding code -> decision code."""
    (container,) = [
        item
        for item in sr.ContentSequence
        if item.ConceptNameCodeSequence[0].CodeValue == "C0034375"
    ]
    return {
        item.ConceptNameCodeSequence[0].CodeValue: item.ConceptCodeSequence[0].CodeValue
        for item in container.ContentSequence
        if item.ValueType == "CODE"
    }


def _algorithm_rows(sr: pydicom.Dataset) -> set[str]:
    """Concept codes of every TEXT row anywhere under the Imaging Measurements container."""
    found: set[str] = set()

    def walk(items: pydicom.Sequence) -> None:
        for item in items:
            if item.ValueType == "TEXT":
                found.add(item.ConceptNameCodeSequence[0].CodeValue)
            walk(item.get("ContentSequence", []))

    walk([i for i in sr.ContentSequence if i.ConceptNameCodeSequence[0].CodeValue == "126010"])
    return found


def test_every_group_has_a_tracking_identifier_and_uid(written: Written) -> None:
    report = report_of(written.sr)
    groups = [*report.get_planar_roi_measurement_groups(), *report.get_image_measurement_groups()]
    assert len(groups) == len(written.case.outcome.result.findings)
    uids = {str(group.tracking_uid) for group in groups}
    assert len(uids) == len(groups)
    assert all(group.tracking_identifier for group in groups)


def test_algorithm_identification_has_only_tid_4019_rows(written: Written) -> None:
    rows = _algorithm_rows(pydicom.dcmread(written.sr))
    assert {"111001", "111003", "111002"} <= rows  # name, version, parameters
    assert "122405" not in rows  # Algorithm Manufacturer: not a TID 4019 row


def test_flagged_finding_has_its_box_on_the_source_image(written: Written) -> None:
    rois = report_of(written.sr).get_planar_roi_measurement_groups()
    flagged = [f for f in written.case.outcome.result.findings if f.flagged]
    assert [f.bbox for f in flagged] == [BLOB_BOX]
    assert len(rois) == 1
    region = rois[0].roi
    assert isinstance(region, hd.sr.ImageRegion)
    assert region.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
    x0, y0, x1, y1 = BLOB_BOX
    expected = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    np.testing.assert_array_equal(region.value, np.array(expected, dtype=np.float32))
    (reference,) = region.ContentSequence[0].ReferencedSOPSequence
    source = source_header(written.case)
    assert reference.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert reference.ReferencedSOPClassUID == source.SOPClassUID


def test_unflagged_findings_reference_the_whole_source_image(written: Written) -> None:
    groups = report_of(written.sr).get_image_measurement_groups()
    assert len(groups) == 2
    for group in groups:
        (source,) = group.source_images
        assert source.referenced_sop_instance_uid == source_header(written.case).SOPInstanceUID


def test_evidence_lists_the_source_instance(written: Written) -> None:
    sr = pydicom.dcmread(written.sr)
    source = source_header(written.case)
    (study,) = sr.CurrentRequestedProcedureEvidenceSequence
    assert study.StudyInstanceUID == source.StudyInstanceUID
    (series,) = study.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == source.SeriesInstanceUID
    assert [i.ReferencedSOPInstanceUID for i in series.ReferencedSOPSequence] == [
        source.SOPInstanceUID
    ]


def test_model_identity_and_disclaimer_are_in_the_report(written: Written) -> None:
    manifest = written.case.package.manifest
    sr = pydicom.dcmread(written.sr)
    texts = texts_in(sr)
    assert manifest.name in texts  # Algorithm Name and Device Observer Name
    assert manifest.version in texts  # Algorithm Version
    assert "radiology-diagnostics" in texts  # Device Observer Manufacturer
    assert f"model.onnx sha256 {manifest.sha256}" in texts  # Algorithm Parameters
    assert any(text.startswith(DISCLAIMER) for text in texts)
    assert manifest.sha256 in sr.SoftwareVersions
    assert f"{manifest.name} {manifest.version}" in sr.SoftwareVersions
    assert sr.Manufacturer == "radiology-diagnostics"


def test_report_without_flags_has_no_regions_and_is_valid(case: Case, tmp_path: Path) -> None:
    low = {"nodule": 0.05, "consolidation": 0.2, "cardiomegaly": 0.35}
    outcome = make_outcome(case.outcome.analysed[0].image, case.package, low)
    assert outcome.result.priority == "routine"
    dataset = build_sr(outcome, series_number=42, instance_number=3)
    path = tmp_path / "sr.dcm"
    dataset.save_as(path, enforce_file_format=True)
    assert dciodvfy(path).errors == []
    report = report_of(path)
    assert report.get_planar_roi_measurement_groups() == []
    assert len(report.get_image_measurement_groups()) == 3
    assert (dataset.SeriesNumber, dataset.InstanceNumber) == (42, 3)


def test_not_analysed_outcome_is_refused(case: Case) -> None:
    result = StudyResult(
        study_instance_uid=case.outcome.result.study_instance_uid,
        status="not_analyzed",
        reason="lateral view is out of scope",
    )
    with pytest.raises(ReportError, match="not analysed"):
        build_sr(dataclasses.replace(case.outcome, result=result))


def test_finding_on_an_instance_that_was_not_analysed_is_refused(case: Case) -> None:
    result = case.outcome.result
    stray = result.findings[0].model_copy(update={"sop_instance_uid": str(generate_uid())})
    broken = result.model_copy(update={"findings": [stray, *result.findings[1:]]})
    with pytest.raises(ReportError, match="not among the analysed instances"):
        build_sr(dataclasses.replace(case.outcome, result=broken))


def test_box_outside_the_image_is_refused(case: Case) -> None:
    result = case.outcome.result
    flagged = next(f for f in result.findings if f.flagged)
    outside = flagged.model_copy(update={"bbox": (10, 10, 10_000, 20)})
    broken = result.model_copy(
        update={"findings": [outside if f is flagged else f for f in result.findings]}
    )
    with pytest.raises(ReportError, match="outside"):
        build_sr(dataclasses.replace(case.outcome, result=broken))
