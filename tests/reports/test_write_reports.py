"""write_reports: which files, where, named how, and what it refuses."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import highdicom as hd
import pydicom
import pytest

from diagnostics.dicom import read_instance
from diagnostics.errors import ReportError
from diagnostics.package import ModelPackage
from diagnostics.reports import write_reports
from diagnostics.results import FindingResult, InstanceResult, StudyResult
from diagnostics.screening.outcome import ScreeningOutcome
from tests.reports.cases import (
    BLOB_BOX,
    Case,
    Written,
    make_outcome,
    report_of,
    source_header,
    write_source,
)
from tests.validators import dciodvfy


def test_writes_sr_overlay_and_state_under_the_study_folder(written: Written) -> None:
    folder = written.sr.parent
    assert folder.name == written.case.outcome.result.study_instance_uid
    assert written.paths == [written.sr, written.overlay, written.state]
    assert sorted(p.name for p in folder.iterdir()) == ["OV-0001.dcm", "PR-0001.dcm", "SR.dcm"]


def test_each_output_kind_is_its_own_new_series(written: Written) -> None:
    series = [pydicom.dcmread(p).SeriesInstanceUID for p in written.paths]
    assert len(set(series)) == 3
    assert source_header(written.case).SeriesInstanceUID not in series


@pytest.mark.parametrize("status", ["not_analyzed", "failed"])
def test_outcomes_that_were_not_analysed_write_nothing(
    case: Case, tmp_path: Path, status: str
) -> None:
    result = StudyResult(
        study_instance_uid=case.outcome.result.study_instance_uid,
        status=status,  # type: ignore[arg-type]
        reason="no frontal chest radiograph in the study",
    )
    written = write_reports(ScreeningOutcome(result=result), tmp_path)
    assert written.paths == [] and written.failures == []
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("study_uid", ["../../etc", "1.2.3.abc", "1.2..3", "1." + "2" * 70, ""])
def test_malformed_study_uid_is_refused(case: Case, tmp_path: Path, study_uid: str) -> None:
    result = case.outcome.result.model_copy(update={"study_instance_uid": study_uid})
    with pytest.raises(ReportError, match="not a valid DICOM UID"):
        write_reports(dataclasses.replace(case.outcome, result=result), tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_instance_of_another_study_is_refused(case: Case, tmp_path: Path) -> None:
    result = case.outcome.result.model_copy(update={"study_instance_uid": "1.2.3.4"})
    with pytest.raises(ReportError, match=r"not to 1\.2\.3\.4"):
        write_reports(dataclasses.replace(case.outcome, result=result), tmp_path)


def test_one_overlay_per_instance_that_holds_a_finding(
    bundled: ModelPackage, tmp_path: Path
) -> None:
    sources = tmp_path / "sources"
    sources.mkdir()
    images = [read_instance(write_source(sources, 7, "MONOCHROME2", instance=n)) for n in (1, 2, 3)]
    first = make_outcome(
        images[0], bundled, {"nodule": 0.93, "consolidation": 0.8, "cardiomegaly": 0.3}
    )
    a, b, c = (i.uids.sop_instance_uid for i in images)
    findings: list[FindingResult] = []
    for finding in first.result.findings:
        if finding.code == "consolidation":  # strongest on the second image
            finding = finding.model_copy(
                update={"sop_instance_uid": b, "bbox": (120, 60, 200, 180)}
            )
        findings.append(finding)
    result = first.result.model_copy(
        update={
            "findings": findings,
            "instances": [InstanceResult(sop_instance_uid=u, status="analyzed") for u in (a, b, c)],
        }
    )
    analysed = tuple(dataclasses.replace(first.analysed[0], image=image) for image in images)
    outcome = ScreeningOutcome(result=result, analysed=analysed, package=bundled)

    written = write_reports(outcome, tmp_path / "out")
    assert written.failures == []
    paths = written.paths

    assert [p.name for p in paths] == [
        "SR.dcm", "OV-0001.dcm", "PR-0001.dcm", "OV-0002.dcm", "PR-0002.dcm"
    ]  # fmt: skip
    for path in paths:
        assert dciodvfy(path).errors == [], path.name
    overlays = [pydicom.dcmread(p) for p in paths if p.name.startswith("OV")]
    assert [o.SourceImageSequence[0].ReferencedSOPInstanceUID for o in overlays] == [a, b]
    assert [o.InstanceNumber for o in overlays] == [1, 2]
    assert overlays[0].SeriesInstanceUID == overlays[1].SeriesInstanceUID
    states = [pydicom.dcmread(p) for p in paths if p.name.startswith("PR")]
    referenced = [s.ReferencedSeriesSequence[0].ReferencedImageSequence[0] for s in states]
    assert [r.ReferencedSOPInstanceUID for r in referenced] == [a, b]

    regions: list[hd.sr.ImageRegion] = []
    for group in report_of(paths[0]).get_planar_roi_measurement_groups():
        assert isinstance(group.roi, hd.sr.ImageRegion)
        regions.append(group.roi)
    assert [
        r.ContentSequence[0].ReferencedSOPSequence[0].ReferencedSOPInstanceUID for r in regions
    ] == [a, b]
    assert tuple(regions[0].value[2]) == (BLOB_BOX[2], BLOB_BOX[3])
    sr = pydicom.dcmread(paths[0])
    evidence = {
        ref.ReferencedSOPInstanceUID
        for name in ("CurrentRequestedProcedureEvidenceSequence", "PertinentOtherEvidenceSequence")
        for study in sr.get(name, [])
        for series in study.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }
    assert evidence == {a, b, c}


def test_an_unwritable_destination_is_a_report_error(case: Case, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(ReportError, match="cannot be created"):
        write_reports(case.outcome, blocker)
