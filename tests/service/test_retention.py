"""Retention: the purge of old images and outputs, what it must never touch, crash leftovers,
and `diagnostics purge` (the running service's own purge and the watermark are in
`test_retention_service.py`)."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from diagnostics.dicom import read_instance
from diagnostics.errors import ConfigurationError
from diagnostics.results import StudyResult
from diagnostics.screening import Screener
from diagnostics.service.retention import (
    DAY_S,
    MIN_PURGE_EVERY_S,
    MIN_PURGE_EVERY_VARIABLE,
    DiskWatermark,
    MinFree,
    RetentionJob,
    cutoff,
    earlier_urgent,
)
from diagnostics.service.settings import ServiceSettings
from diagnostics.service.workers import ScreeningWorker
from diagnostics.store import Store
from diagnostics.store.sqlite import SqliteStore
from diagnostics.ui.pages import study_page
from tests.helpers.cli import assert_refused, run_cli
from tests.helpers.synth import BUNDLED, SynthStudies

FUTURE = time.time() + 10 * DAY_S
"""A cutoff after every result these tests record: everything done is due."""

MakeStore = Callable[..., Store]
"""`make_store(root)`: a store on the test's backend (SQLite, PostgreSQL: `database`)."""


@pytest.fixture(scope="module")
def screener() -> Screener:
    return Screener.load(BUNDLED)


def _screen(store: SqliteStore, screener: Screener, *destinations: str) -> None:
    worker = ScreeningWorker(store, screener, stable_s=0, destinations=list(destinations))
    assert worker.run_once()


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_purge_deletes_images_and_outputs_and_keeps_the_result(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies, screener: Screener
) -> None:
    folder, truths = synth_studies
    study = truths[0].study_instance_uid
    data = (folder / truths[0].file).read_bytes()
    store = make_store(tmp_path)
    store.receive(data, "test")
    _screen(store, screener)
    instances, outputs = _files(store.instances_dir), _files(store.results_dir)
    assert len(instances) == 1  # DICOM outputs are built only with a PACS destination

    assert not store.purge(time.time() - DAY_S).studies  # inside the window: nothing goes

    dry = store.purge(FUTURE, dry_run=True)
    assert [s.study_instance_uid for s in dry.studies] == [study]
    assert set(dry.studies[0].files) == set(instances + outputs)
    assert dry.bytes == sum(p.stat().st_size for p in instances + outputs) > 0
    assert _files(tmp_path / "instances") == instances  # a dry run deletes nothing
    assert not store.audit_entries("images_purged")

    done = store.purge(FUTURE)
    assert [s.study_instance_uid for s in done.studies] == [study] and done.bytes == dry.bytes
    assert _files(store.instances_dir) == [] and _files(store.results_dir) == []
    assert list(store.results_dir.iterdir()) == []  # the emptied output folders went too
    latest = store.latest_result(study)
    assert latest is not None and latest[0] == 1 and latest[1].status == "analyzed"
    total, rows = store.worklist()
    assert total == 1 and rows[0].study_instance_uid == study
    state = store.study_state(study)
    assert state is not None and state["purged_at"] is not None and state["instance_count"] == 0
    assert store.instances_of(study) == [] and store.class_maps(study, 1) == []
    (entry,) = store.audit_entries("images_purged")
    assert entry["detail"]["studies"] == [study]  # type: ignore[index]
    assert entry["detail"]["files"] == len(instances) + len(outputs)  # type: ignore[index]
    assert not store.purge(FUTURE).studies  # nothing left to purge
    page = study_page(store, study, None, read_instance, 60.0)
    assert page is not None and page.shown is None and page.result is not None
    assert page.image_problem is not None and "purged" in page.image_problem

    # Sent again after the purge: stored and screened again on what came since, and said so.
    received = store.receive(data, "test")
    assert not received.duplicate
    page = study_page(store, study, None, read_instance, 60.0)
    assert page is not None and page.image_problem is None and page.purge_note is not None
    assert "waiting to be screened" in page.purge_note
    _screen(store, screener)
    page = study_page(store, study, None, read_instance, 60.0)
    assert page is not None and page.purge_note is not None
    assert "received before" in page.purge_note and "covers the 1 instance" in page.purge_note
    latest = store.latest_result(study)
    assert latest is not None and latest[0] == 2 and latest[1].status == "analyzed"
    assert len(store.instances_of(study)) == 1 and store.class_maps(study, 2)


def test_a_resent_study_keeps_an_earlier_urgent_flag_in_view(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies, screener: Screener
) -> None:
    """After a purge a late instance alone is screened; a routine result of it must not hide
    that an earlier version flagged the study urgent."""
    folder, truths = synth_studies
    study = truths[0].study_instance_uid
    data = (folder / truths[0].file).read_bytes()
    store = make_store(tmp_path)
    store.receive(data, "test")
    _screen(store, screener)
    real = store.latest_result(study)
    assert real is not None
    first, *rest = real[1].findings
    high = {"flagged": True, "probability": (1.0 + first.threshold) / 2}
    flagged = [first.model_copy(update=high), *rest]
    urgent = StudyResult.model_validate(
        real[1].model_copy(update={"findings": flagged, "priority": "urgent"}).model_dump()
    )
    refused = StudyResult(study_instance_uid=study, status="not_analyzed", reason="a late view")
    for result in (urgent, refused):  # versions 2 and 3, each after a purge and a resend
        assert store.purge(FUTURE).studies
        store.receive(data, "test")
        claim = store.claim_study(study)
        assert claim is not None and store.complete(claim, result)
    page = study_page(store, study, None, read_instance, 60.0)
    assert page is not None and page.version == 3 and page.earlier_urgent == 2
    assert page.purge_note is not None and "covers the 1 instance" in page.purge_note
    assert earlier_urgent(store, study, 2, urgent) is None  # the current one is urgent itself


def test_unfinished_studies_and_pending_deliveries_are_kept(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies, screener: Screener
) -> None:
    folder, truths = synth_studies
    store = make_store(tmp_path)
    store.receive((folder / truths[0].file).read_bytes(), "test")
    _screen(store, screener, "PACS@127.0.0.1:9")  # nobody there: the outputs stay pending
    store.receive((folder / truths[1].file).read_bytes(), "test")  # waiting, no result
    store.receive((folder / truths[2].file).read_bytes(), "test")
    claim = store.claim_study(truths[2].study_instance_uid)  # being screened
    assert claim is not None
    before = _files(tmp_path)
    report = store.purge(FUTURE)
    assert report.studies == () and report.leftovers == ()
    assert [p for p in before if p.exists()] == before

    # Delivered: now the first study goes, and only its files.
    for item in store.due_outbox():
        store.mark_sent(item)
    report = store.purge(FUTURE)
    assert [s.study_instance_uid for s in report.studies] == [truths[0].study_instance_uid]
    assert len(store.instances_of(truths[1].study_instance_uid)) == 1
    assert all(p.is_file() for p in claim.paths)
    assert store.study_state(truths[2].study_instance_uid)["state"] == "screening"  # type: ignore[index]


def test_files_left_by_an_interrupted_purge_are_swept(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies, screener: Screener
) -> None:
    """Rows go first, files after: a crash between leaves files no row names, which the next
    purge deletes; an instance file younger than an hour may be intake's, and stays."""
    folder, truths = synth_studies
    store = make_store(tmp_path)
    store.receive((folder / truths[0].file).read_bytes(), "test")
    _screen(store, screener)
    output = tmp_path / "results" / "run" / truths[0].study_instance_uid / "SR.dcm"
    output.parent.mkdir(parents=True)  # as a PACS destination's outputs would be
    output.write_bytes(b"SR")
    saved = tmp_path / "saved"
    shutil.copytree(tmp_path / "instances", saved / "instances")
    shutil.copytree(tmp_path / "results", saved / "results")
    assert store.purge(FUTURE).studies
    # As if the process died after the commit, before any file was deleted:
    shutil.copytree(saved / "instances", tmp_path / "instances", dirs_exist_ok=True)
    shutil.copytree(saved / "results", tmp_path / "results", dirs_exist_ok=True)
    assert store.purge(FUTURE, leftovers=False).leftovers == ()  # the job's usual, cheap run
    assert _files(store.results_dir)
    young = store.purge(FUTURE)  # the instance file is too young to be called stray
    assert young.studies == () and _files(store.instances_dir)
    assert _files(store.results_dir) == []  # outputs from before the purge: swept
    old = time.time() - 2 * 3600
    for path in _files(store.instances_dir):
        os.utime(path, (old, old))
    swept = store.purge(FUTURE)
    assert swept.studies == () and len(swept.leftovers) == 1 and swept.bytes > 0
    assert _files(store.instances_dir) == []
    audited = store.audit_entries("purge_leftovers")
    outputs = len(_files(saved / "results"))
    assert [e["detail"]["files"] for e in audited] == [outputs, 1]  # type: ignore[index]
    latest = store.latest_result(truths[0].study_instance_uid)
    assert latest is not None and latest[1].status == "analyzed"


def test_purge_command_dry_run_then_purge(
    tmp_path: Path, synth_studies: SynthStudies, screener: Screener
) -> None:
    folder, truths = synth_studies
    store = SqliteStore(tmp_path)
    for truth in truths[:2]:
        store.receive((folder / truth.file).read_bytes(), "test")
    _screen(store, screener)
    count = len(_files(store.instances_dir) + _files(store.results_dir))
    store.close()

    inside = run_cli("purge", "--storage", tmp_path, "--retain-days", "1")
    assert inside.returncode == 0, inside.stderr
    assert json.loads(inside.stdout)["study_count"] == 0

    later = "--now", str(FUTURE)
    dry = run_cli("purge", "--storage", tmp_path, "--retain-days", "1", "--dry-run", *later)
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["dry_run"] is True and report["study_count"] == 2
    assert report["file_count"] == count and report["bytes_freed"] > 0
    expected = {t.study_instance_uid for t in truths[:2]}
    assert {s["study_instance_uid"] for s in report["studies"]} == expected
    assert len(_files(tmp_path / "instances")) == 2

    # A future --now really deleting would purge inside the window: refused, nothing goes.
    future = run_cli("purge", "--storage", tmp_path, "--retain-days", "1", *later)
    assert "--dry-run" in assert_refused(future, "ConfigurationError")
    assert len(_files(tmp_path / "instances")) == 2

    time.sleep(1.0)
    done = run_cli("purge", "--storage", tmp_path, "--retain-days", "0.00001")  # under 1 s
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["bytes_freed"] == report["bytes_freed"]
    assert _files(tmp_path / "instances") == [] and _files(tmp_path / "results") == []
    reopened = SqliteStore(tmp_path)
    (entry,) = reopened.audit_entries("images_purged")
    assert entry["actor"] == "cli:purge"
    assert set(entry["detail"]["studies"]) == expected  # type: ignore[index]


def test_purge_command_refusals(tmp_path: Path) -> None:
    message = assert_refused(run_cli("purge", "--storage", tmp_path), "ConfigurationError")
    assert "--retain-days" in message
    empty = run_cli("purge", "--storage", tmp_path, "--retain-days", "3")
    assert "no intake database" in assert_refused(empty, "ConfigurationError")
    bad = run_cli("purge", "--storage", tmp_path, "--retain-days", "-1")
    assert bad.returncode == 2 and "more than 0 days" in bad.stderr


@pytest.mark.parametrize(
    ("text", "total", "expected"),
    [
        ("2GiB", 10**12, 2 << 30),
        ("500MB", 10**12, 500 * 10**6),
        ("1048576", 10**12, 1 << 20),
        ("5%", 1000, 50),
        ("0", 1000, 0),
    ],
)
def test_min_free_disk_amounts(text: str, total: int, expected: int) -> None:
    assert MinFree.parse(text).bytes_of(total) == expected


@pytest.mark.parametrize("text", ["lots", "2 parsecs", "100%", "-1GiB", ""])
def test_bad_min_free_disk_is_named(text: str) -> None:
    with pytest.raises(ConfigurationError, match="min-free-disk"):
        MinFree.parse(text)
    with pytest.raises(ConfigurationError, match="MIN_FREE_DISK"):
        ServiceSettings.from_env({"DIAGNOSTICS_MIN_FREE_DISK": text or "x"})


def test_watermark_off_never_refuses_and_one_big_instance_cannot_cross(tmp_path: Path) -> None:
    gone = tmp_path / "no-such-folder"  # statvfs fails: refused unless the floor is 0
    assert DiskWatermark(gone, "0").refusal() is None
    assert DiskWatermark(gone, "0").refusal(1 << 60) is None
    assert DiskWatermark(gone, "1MB").refusal() is not None
    floor = DiskWatermark(tmp_path, MinFree(1, False))  # one byte
    free = floor.state().free
    assert free > 1 << 20 and floor.refusal() is None and floor.refusal(1 << 20) is None
    big = floor.refusal(free)  # would leave 0 bytes: under the floor
    assert big is not None and "to store" in str(big)


def test_the_job_runs_at_most_once_a_minute(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path)
    assert RetentionJob(store, 0.00001).poll_s == MIN_PURGE_EVERY_S == 60.0  # a 1 s window
    assert RetentionJob(store, 90).poll_s == 3600.0
    monkeypatch.setenv(MIN_PURGE_EVERY_VARIABLE, "0.5")  # the service test's short window
    assert RetentionJob(store, 0.00001).poll_s == pytest.approx(0.864)


def test_retention_settings_round_trip(tmp_path: Path) -> None:
    config = ServiceSettings(storage=tmp_path, retain_days=0.5, min_free_disk="3%")
    assert ServiceSettings.from_env(config.to_env()) == config
    assert ServiceSettings().retain_days is None  # keep forever unless asked
    assert cutoff(2.0, now=10 * DAY_S) == 8 * DAY_S


def test_a_purged_study_loses_its_shadow_results_too(tmp_path: Path) -> None:
    """The shadow model's result of a purged study is a result like the others: it goes."""
    from diagnostics.package.registry import ModelRegistry
    from diagnostics.service.retention import _purge_shadow_results

    shadow = ModelRegistry(tmp_path).shadow_results("m-1.1.0")
    shadow.mkdir(parents=True)
    for study in ("1.2.3", "1.2.4"):
        (shadow / f"{study}.json").write_text("{}")
    _purge_shadow_results(tmp_path, ["1.2.3"])
    assert sorted(p.name for p in shadow.iterdir()) == ["1.2.4.json"]
