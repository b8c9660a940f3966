"""Screening end to end on fresh synthetic studies, and the fail-safe rule under faults."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.uid import generate_uid

from diagnostics.package import ModelPackage
from diagnostics.results import StudyResult
from diagnostics.screening import Screener, failed_batch
from diagnostics.screening.engine import OnnxEngine
from tests.helpers.synth import SynthStudies
from tests.screening.faults import broken_package, nan_logits, out_of_range_gather


@pytest.fixture(scope="module")
def screener(bundled: ModelPackage) -> Screener:
    return Screener.load(bundled)


@pytest.fixture(scope="module")
def screened(screener: Screener, synth_studies: SynthStudies):  # type: ignore[no-untyped-def]
    return screener.screen(synth_studies.files)


def _edited(path: Path, folder: Path, name: str, **attributes: object) -> bytes:
    """The bytes of `path` with header attributes changed (None deletes one)."""
    ds = pydicom.dcmread(path)
    for keyword, value in attributes.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    (folder / name).write_bytes(buffer.getvalue())
    return buffer.getvalue()


def test_every_study_is_analysed_with_every_finding(
    screened, synth_studies: SynthStudies, bundled
) -> None:  # type: ignore[no-untyped-def]
    _, truths = synth_studies
    assert [o.result.study_instance_uid for o in screened.outcomes] == [
        t.study_instance_uid for t in truths
    ]
    assert not screened.rejected
    codes = [f.code for f in bundled.manifest.findings]
    for outcome in screened.outcomes:
        result = outcome.result
        assert result.status == "analyzed", result.reason
        assert [f.code for f in result.findings] == codes
        assert result.model is not None and result.model.sha256 == bundled.manifest.sha256
        assert StudyResult.from_json(result.to_json()) == result
        urgent = {f.code for f in bundled.manifest.findings if f.on_flag == "urgent"}
        raised = any(f.flagged and f.code in urgent for f in result.findings)
        assert (result.priority == "urgent") == raised  # routine findings' flags do not raise


def test_findings_agree_with_the_truth(screened, synth_studies: SynthStudies) -> None:  # type: ignore[no-untyped-def]
    """Cardiomegaly and consolidation are near-perfect on the test set; most calls must match."""
    _, truths = synth_studies
    for code in ("cardiomegaly", "consolidation"):
        calls = [
            next(f for f in o.result.findings if f.code == code).flagged == bool(t.findings[code])
            for o, t in zip(screened.outcomes, truths, strict=True)
        ]
        assert np.mean(calls) >= 0.8, (code, calls)


def test_boxes_locate_large_nodules(screened, synth_studies: SynthStudies) -> None:  # type: ignore[no-untyped-def]
    hits = []
    for outcome, truth in zip(screened.outcomes, synth_studies[1], strict=True):
        nodule = next(f for f in outcome.result.findings if f.code == "nodule")
        if truth.nodule is None or not nodule.flagged or truth.nodule.diameter_mm < 12:
            continue
        assert nodule.bbox is not None
        x, y = truth.nodule.centre_px
        x0, y0, x1, y1 = nodule.bbox
        hits.append(x0 <= x < x1 and y0 <= y < y1)
        assert (x1 - x0) * (y1 - y0) < 0.25 * 384 * 384  # a box, not the whole image
    assert hits and np.mean(hits) >= 0.75, hits


def test_bytes_and_paths_give_the_same_result(
    screener: Screener, synth_studies: SynthStudies
) -> None:
    path = synth_studies.files[3]
    from_path = screener.screen([path]).outcomes[0].result
    from_bytes = screener.screen([path.read_bytes()]).outcomes[0].result
    assert from_bytes.model_dump(exclude={"created"}) == from_path.model_dump(exclude={"created"})


def test_batching_across_studies_keeps_each_answer(
    bundled: ModelPackage, screened, synth_studies: SynthStudies
) -> None:  # type: ignore[no-untyped-def]
    small = Screener(bundled, OnnxEngine(bundled, max_batch=3))
    again = small.screen(synth_studies.files)
    for a, b in zip(again.outcomes, screened.outcomes, strict=True):
        for fa, fb in zip(a.result.findings, b.result.findings, strict=True):
            assert fa.probability == pytest.approx(fb.probability, abs=1e-5)


def test_duplicate_sends_give_one_instance(screener: Screener, synth_studies: SynthStudies) -> None:
    path = synth_studies.files[0]
    batch = screener.screen([path, path, path.read_bytes()])
    assert len(batch.outcomes) == 1
    assert len(batch.outcomes[0].result.instances) == 1


def test_not_dicom_is_rejected_and_the_rest_screened(
    screener: Screener, synth_studies: SynthStudies
) -> None:
    batch = screener.screen([b"this is not a DICOM file", synth_studies.files[0]])
    assert [r.source for r in batch.rejected] == ["item 1"]
    assert type(batch.rejected[0].error).__name__ == "NotDicomError"
    assert batch.outcomes[0].result.status == "analyzed"


def test_out_of_scope_study_is_not_analysed(
    screener: Screener, synth_studies: SynthStudies, tmp_path: Path
) -> None:
    ct = _edited(synth_studies.files[0], tmp_path, "ct.dcm", Modality="CT")
    result = screener.screen([ct]).outcomes[0].result
    assert result.status == "not_analyzed"
    assert result.findings == [] and result.priority == "routine"
    assert result.reason is not None and result.reason.startswith(
        "CT is outside this model's scope"
    )


def test_lateral_beside_frontal_is_skipped_not_hidden(
    screener: Screener, synth_studies: SynthStudies, tmp_path: Path
) -> None:
    frontal = synth_studies.files[1]
    lateral = _edited(
        frontal,
        tmp_path,
        "lat.dcm",
        ViewPosition="LL",
        SOPInstanceUID=generate_uid(),
        SeriesInstanceUID=generate_uid(),
    )
    result = screener.screen([frontal, lateral]).outcomes[0].result
    assert result.status == "analyzed"
    statuses = {i.status: i.reason for i in result.instances}
    assert set(statuses) == {"analyzed", "not_analyzed"}
    assert "View Position LL" in str(statuses["not_analyzed"])


def test_undecodable_image_fails_the_whole_study(
    screener: Screener, synth_studies: SynthStudies, tmp_path: Path
) -> None:
    good = synth_studies.files[2]
    ds = pydicom.dcmread(synth_studies.files[0])  # native (uncompressed) pixels
    ds.StudyInstanceUID = pydicom.dcmread(good).StudyInstanceUID
    ds.PatientID = pydicom.dcmread(good).PatientID
    ds.SOPInstanceUID = generate_uid()
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    batch = screener.screen([good, buffer.getvalue()])
    assert not batch.rejected  # the header is fine; the damage shows only when decoding
    result = batch.outcomes[0].result
    assert result.status == "failed", result
    assert result.findings == [] and "1 of 2 images failed" in str(result.reason)


@pytest.mark.parametrize("edit", [nan_logits, out_of_range_gather], ids=["nan", "runtime-error"])
def test_model_faults_fail_the_study(
    bundled: ModelPackage,
    synth_studies: SynthStudies,
    tmp_path: Path,
    edit,  # type: ignore[no-untyped-def]
) -> None:
    screener = Screener.load(broken_package(bundled, tmp_path, edit))
    batch = screener.screen(synth_studies.files[:3])
    for outcome in batch.outcomes:
        assert outcome.result.status == "failed"
        assert outcome.result.findings == []
        assert "the model could not analyse the image" in str(outcome.result.reason)


def test_timeout_fails_the_study(bundled: ModelPackage, synth_studies: SynthStudies) -> None:
    screener = Screener.load(bundled, timeout_s=1e-4)
    result = screener.screen(synth_studies.files[:4]).outcomes[0].result
    assert result.status == "failed" and "timeout" in str(result.reason)


def test_a_fault_fails_only_the_studies_in_its_batch(
    bundled: ModelPackage, synth_studies: SynthStudies
) -> None:
    """One batch per study: a timeout in one cannot turn the others into 'no findings'."""
    screener = Screener.load(bundled, max_batch=1, timeout_s=1e-4)
    batch = screener.screen(synth_studies.files[:2])
    assert all(o.result.status in ("failed", "analyzed") for o in batch.outcomes)
    assert all(o.result.findings == [] for o in batch.outcomes if o.result.status == "failed")


def test_no_model_means_failed_not_normal(synth_studies: SynthStudies) -> None:
    batch = failed_batch(synth_studies.files[:2], "the model could not be loaded: gone")
    assert [o.result.status for o in batch.outcomes] == ["failed", "failed"]
    assert all(o.result.instances[0].status == "failed" for o in batch.outcomes)


@pytest.mark.slow
def test_appearance_check_refuses_a_non_chest_labelled_chest(
    profiled: ModelPackage, synth_studies: SynthStudies, tmp_path: Path
) -> None:
    screener = Screener.load(profiled)
    chests = screener.screen(synth_studies.files)
    assert all(o.result.status == "analyzed" for o in chests.outcomes)
    assert all(
        i.appearance_score is not None and i.appearance_score < 1.0
        for o in chests.outcomes
        for i in o.result.instances
    )
    # A "knee": the same header, but the image is a bright rounded bone shape on soft tissue.
    ds = pydicom.dcmread(synth_studies.files[0])
    ds.decompress() if ds.file_meta.TransferSyntaxUID.is_compressed else None
    rows, cols = ds.Rows, ds.Columns
    yy, xx = np.mgrid[:rows, :cols]
    knee = 600 + 2500 * (
        ((xx - cols / 2) / (cols / 5)) ** 2 + ((yy - rows / 2) / (rows / 2.2)) ** 2 < 1
    )
    ds.PixelData = knee.astype(np.uint16).tobytes()
    ds.PhotometricInterpretation = "MONOCHROME2"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    result = screener.screen([buffer.getvalue()]).outcomes[0].result
    assert result.status == "not_analyzed"
    assert "does not look like the DX or CR images of the CHEST" in str(result.reason)
    assert result.instances[0].appearance_score is not None
    assert result.instances[0].appearance_score > 1.0


@pytest.mark.slow
def test_upside_down_chest_is_refused(profiled: ModelPackage, synth_studies: SynthStudies) -> None:
    ds = pydicom.dcmread(synth_studies.files[0])
    pixels = ds.pixel_array[::-1].copy()
    ds.PixelData = pixels.tobytes()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    result = Screener.load(profiled).screen([buffer.getvalue()]).outcomes[0].result
    assert result.status == "not_analyzed", result.instances


def test_studies_sharing_a_sop_uid_keep_their_own_answers(
    screener: Screener, synth_studies: SynthStudies, tmp_path: Path
) -> None:
    files = synth_studies.files
    first = pydicom.dcmread(files[0])
    second = pydicom.dcmread(files[5])
    second.SOPInstanceUID = first.SOPInstanceUID  # a broken sender reusing a UID
    buffer = io.BytesIO()
    second.save_as(buffer, enforce_file_format=True)
    together = screener.screen([files[0], buffer.getvalue()])
    alone = screener.screen([buffer.getvalue()]).outcomes[0].result
    mixed = next(
        o.result
        for o in together.outcomes
        if o.result.study_instance_uid == alone.study_instance_uid
    )
    for a, b in zip(mixed.findings, alone.findings, strict=True):
        assert a.probability == pytest.approx(b.probability, abs=1e-5)
