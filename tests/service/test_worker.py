"""The screening loop records a result for every claim, even when parts of the work fail."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import pytest

from diagnostics.screening import Screener
from diagnostics.service.workers import ScreeningWorker
from diagnostics.store.sqlite import SqliteStore
from tests.helpers.synth import BUNDLED, SynthStudies


@pytest.fixture(scope="module")
def screener() -> Screener:
    return Screener.load(BUNDLED)


def _worker(store: SqliteStore, screener: Screener) -> ScreeningWorker:
    return ScreeningWorker(store, screener, stable_s=0, destinations=["PACS@127.0.0.1:104"])


def test_result_and_outputs_are_recorded_and_queued(
    tmp_path: Path, synth_studies: SynthStudies, screener: Screener
) -> None:
    folder, truths = synth_studies
    store = SqliteStore(tmp_path)
    store.receive((folder / truths[0].file).read_bytes(), "test")
    assert _worker(store, screener).run_once()
    version, result = store.latest_result(truths[0].study_instance_uid) or (0, None)
    assert version == 1 and result is not None and result.status == "analyzed"
    queued = store.due_outbox()
    assert {p.path.name for p in queued} >= {"SR.dcm", "OV-0001.dcm"}
    assert all(p.path.is_file() for p in queued)


@pytest.mark.parametrize("destinations", [[], ["fhir+http://127.0.0.1:9/fhir"]])
def test_no_dicom_outputs_are_built_without_a_pacs(
    tmp_path: Path, synth_studies: SynthStudies, screener: Screener, destinations: list[str]
) -> None:
    """Nothing would read them: building them was most of a screening's time (bench)."""
    folder, truths = synth_studies
    store = SqliteStore(tmp_path)
    store.receive((folder / truths[0].file).read_bytes(), "test")
    assert ScreeningWorker(store, screener, stable_s=0, destinations=destinations).run_once()
    _, result = store.latest_result(truths[0].study_instance_uid) or (0, None)
    assert result is not None and result.status == "analyzed" and not result.output_failures
    assert not list(store.results_dir.rglob("*.dcm"))
    assert {item.path.suffix for item in store.due_outbox()} <= {".json"}


def test_outputs_that_cannot_be_built_do_not_lose_the_result(
    tmp_path: Path, synth_studies: SynthStudies, screener: Screener
) -> None:
    folder, truths = synth_studies
    ds = pydicom.dcmread(folder / truths[1].file)
    ds.PatientName = ["Doe^Jane", "Roe^Richard"]  # legal in DICOM, refused by highdicom
    buffer = io.BytesIO()
    ds.save_as(buffer)
    store = SqliteStore(tmp_path)
    store.receive(buffer.getvalue(), "test")
    _worker(store, screener).run_once()
    _, result = store.latest_result(truths[1].study_instance_uid) or (0, None)
    assert result is not None and result.status == "analyzed"
    assert store.due_outbox() == []
    (entry,) = store.audit_entries("reports_failed")
    assert entry["detail"]["study"] == truths[1].study_instance_uid  # type: ignore[index]


def test_a_vanished_file_fails_the_study_instead_of_looping(
    tmp_path: Path, synth_studies: SynthStudies, screener: Screener
) -> None:
    folder, truths = synth_studies
    store = SqliteStore(tmp_path)
    store.receive((folder / truths[2].file).read_bytes(), "test")
    for path in store.instances_dir.iterdir():
        path.unlink()
    _worker(store, screener).run_once()
    _, result = store.latest_result(truths[2].study_instance_uid) or (0, None)
    assert result is not None and result.status == "failed"
    assert "could not be read" in str(result.reason)
    assert store.claim_due(stable_s=0) == []


def test_an_unreadable_instance_fails_its_study_not_hides(
    tmp_path: Path, synth_studies: SynthStudies, screener: Screener
) -> None:
    folder, truths = synth_studies
    store = SqliteStore(tmp_path)
    store.receive((folder / truths[3].file).read_bytes(), "test")
    ds = pydicom.dcmread(folder / truths[3].file)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer)
    store.receive(buffer.getvalue(), "test")
    newest = max(store.instances_dir.iterdir(), key=lambda p: p.stat().st_mtime_ns)
    newest.write_bytes(b"damaged on disk")
    _worker(store, screener).run_once()
    _, result = store.latest_result(truths[3].study_instance_uid) or (0, None)
    assert result is not None and result.status == "failed", result
