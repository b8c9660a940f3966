"""Fault injection after the claim: whatever fails (decode, preprocess, model, interpretation, an
output writer, the database, the destination), every claimed study ends with a recorded result,
or its claim is given back and then recorded; none is left `screening`.

Faults are injected with monkeypatch on our own functions; the store, model, DICOM outputs and
the DICOM destination are real.
"""

from __future__ import annotations

import socket
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

import diagnostics.reports
import diagnostics.screening.interpret
import diagnostics.screening.prepare
from diagnostics.errors import CorruptDicomError, InferenceError
from diagnostics.results import StudyResult
from diagnostics.screening import Screener
from diagnostics.service.claims import MAX_TRIES
from diagnostics.service.reasons import plain
from diagnostics.service.workers import OutboxWorker, ScreeningWorker
from diagnostics.store.sqlite import SqliteStore
from tests.helpers.synth import BUNDLED, SynthStudies
from tests.helpers.wait import free_port


@pytest.fixture(scope="module")
def screener() -> Screener:
    return Screener.load(BUNDLED)


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "store")


def _receive(store: SqliteStore, synth_studies: SynthStudies, index: int = 0) -> str:
    folder, truths = synth_studies
    return store.receive((folder / truths[index].file).read_bytes(), "test").study_instance_uid


def _worker(
    store: SqliteStore, screener: Screener, to: str = "PACS@127.0.0.1:1"
) -> ScreeningWorker:
    return ScreeningWorker(store, screener, stable_s=0, destinations=[to])


def _recorded(store: SqliteStore, study: str) -> StudyResult:
    """The study's result; it must be `done` and nothing may be left claimed."""
    state = store.study_state(study)
    assert state is not None and state["state"] == "done", state
    assert store.counts()["studies_screening"] == 0
    latest = store.latest_result(study)
    assert latest is not None
    return latest[1]


def _failed_with(result: StudyResult, words: str) -> None:
    assert result.status == "failed", result
    assert result.reason is not None and words in result.reason, result.reason
    assert "/" not in result.reason and "Traceback" not in result.reason, result.reason


def test_decode_failure_fails_the_study(
    store: SqliteStore,
    synth_studies: SynthStudies,
    screener: Screener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def corrupt(*_: object, **__: object) -> None:
        raise CorruptDicomError("pixel data truncated")

    monkeypatch.setattr(diagnostics.screening.prepare, "read_instance", corrupt)
    study = _receive(store, synth_studies)
    assert _worker(store, screener).run_once()
    _failed_with(_recorded(store, study), "could not be read: pixel data truncated")


def test_an_unforeseen_error_fails_the_study_without_a_traceback(
    store: SqliteStore,
    synth_studies: SynthStudies,
    screener: Screener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise OSError(5, "Input/output error", str(store.instances_dir / "x.dcm"))

    monkeypatch.setattr(diagnostics.screening.prepare, "read_instance", broken)
    study = _receive(store, synth_studies)
    _worker(store, screener).run_once()
    _failed_with(_recorded(store, study), "internal error (OSError)")


def test_preprocess_failure_fails_the_study(
    store: SqliteStore,
    synth_studies: SynthStudies,
    screener: Screener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("spatial transform failed")

    monkeypatch.setattr(diagnostics.screening.prepare, "preprocess_image", broken)
    study = _receive(store, synth_studies)
    _worker(store, screener).run_once()
    _failed_with(_recorded(store, study), "could not be preprocessed")


@pytest.mark.parametrize(
    ("error", "words"),
    [
        (InferenceError("model output holds NaN"), "could not analyse the image"),
        (RuntimeError("onnxruntime: bad allocation"), "internal error (RuntimeError)"),
    ],
)
def test_inference_failure_fails_the_study(
    store: SqliteStore,
    synth_studies: SynthStudies,
    screener: Screener,
    monkeypatch: pytest.MonkeyPatch,
    error: Exception,
    words: str,
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise error

    monkeypatch.setattr(screener.engine, "run", broken)
    study = _receive(store, synth_studies)
    _worker(store, screener).run_once()
    _failed_with(_recorded(store, study), words)


def test_interpretation_failure_fails_the_study(
    store: SqliteStore,
    synth_studies: SynthStudies,
    screener: Screener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise ValueError("operands could not be broadcast together")

    monkeypatch.setattr(diagnostics.screening.interpret, "study_findings", broken)
    study = _receive(store, synth_studies)
    _worker(store, screener).run_once()
    result = _recorded(store, study)
    _failed_with(result, "could not be interpreted")
    assert all(i.status == "failed" for i in result.instances)


@pytest.mark.parametrize(
    ("builder", "output", "still_sent"),
    [
        ("build_sr", "sr", "OV-0001.dcm"),
        ("build_overlay", "overlay", "SR.dcm"),
        ("build_presentation_state", "presentation_state", "SR.dcm"),
    ],
)
def test_an_output_writer_failure_is_named_and_the_rest_stand(
    store: SqliteStore,
    synth_studies: SynthStudies,
    screener: Screener,
    monkeypatch: pytest.MonkeyPatch,
    builder: str,
    output: str,
    still_sent: str,
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise AttributeError("'Dataset' object has no attribute 'PatientName'")

    monkeypatch.setattr(diagnostics.reports, builder, broken)
    study = _receive(store, synth_studies)
    _worker(store, screener).run_once()
    result = _recorded(store, study)
    assert result.status == "analyzed"
    assert [f.output for f in result.output_failures] == [output]
    sent = {item.path.name for item in store.due_outbox()}
    assert still_sent in sent and len(sent) == 2  # of SR, OV and PR, all but the broken one


def test_outputs_that_crash_unforeseen_still_record_the_result(
    store: SqliteStore,
    synth_studies: SynthStudies,
    screener: Screener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise MemoryError

    monkeypatch.setattr("diagnostics.service.claims.write_reports", broken)
    study = _receive(store, synth_studies)
    _worker(store, screener).run_once()
    result = _recorded(store, study)
    assert result.status == "analyzed" and result.findings
    (failure,) = result.output_failures
    assert "internal error (MemoryError)" in failure.reason
    assert store.due_outbox() == []


def test_a_read_only_database_gives_the_claim_back_then_records(
    store: SqliteStore,
    synth_studies: SynthStudies,
    screener: Screener,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    complete = SqliteStore.complete
    calls = []

    def read_only_once(self: SqliteStore, *args: object, **kwargs: object) -> int | None:
        calls.append(1)
        db = self.connection()
        db.execute(f"PRAGMA query_only = {'ON' if len(calls) == 1 else 'OFF'}")
        try:
            return complete(self, *args, **kwargs)  # type: ignore[arg-type]
        finally:
            db.execute("PRAGMA query_only = OFF")

    monkeypatch.setattr(SqliteStore, "complete", read_only_once)
    study = _receive(store, synth_studies)
    worker = _worker(store, screener)
    worker.run_once()
    state = store.study_state(study)
    assert state is not None and state["state"] == "waiting" and state["tries"] == 1
    assert store.latest_result(study) is None
    worker.run_once()
    assert _recorded(store, study).status == "analyzed" and len(calls) == 2


def test_a_locked_database_leaves_the_claim_to_its_lease(
    tmp_path: Path, synth_studies: SynthStudies, screener: Screener, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqliteStore(tmp_path / "store", lease_s=60.0)
    complete = SqliteStore.complete
    other = sqlite3.connect(store.db_path, isolation_level=None)

    def locked(self: SqliteStore, *args: object, **kwargs: object) -> int | None:
        # Another process holds the write lock past our busy timeout: the result cannot be
        # recorded, and the claim cannot be given back either.
        other.execute("BEGIN EXCLUSIVE")
        self.connection().execute("PRAGMA busy_timeout = 100")
        return complete(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(SqliteStore, "complete", locked)
    study = _receive(store, synth_studies)
    worker = _worker(store, screener)
    worker.run_once()
    other.execute("ROLLBACK")  # the other process lets go
    monkeypatch.setattr(SqliteStore, "complete", complete)
    state = store.study_state(study)
    assert state is not None and state["state"] == "screening"  # could not be given back
    assert store.claim_due(stable_s=0) == []  # still within its lease
    with sqlite3.connect(store.db_path) as db:  # a lease later
        db.execute("UPDATE studies SET lease_until = ?", (time.time() - 1,))
    assert worker.run_once()  # taken over once the lease ran out
    assert _recorded(store, study).status == "analyzed"
    assert store.study_state(study)["tries"] == 0  # type: ignore[index]


def test_a_destination_that_is_down_keeps_the_result_and_retries(
    store: SqliteStore, synth_studies: SynthStudies, screener: Screener
) -> None:
    study = _receive(store, synth_studies)
    _worker(store, screener, to=f"PACS@127.0.0.1:{free_port()}").run_once()
    assert _recorded(store, study).status == "analyzed"
    outbox = OutboxWorker(store, calling_ae="DIAGNOSTICS")
    assert outbox.run_once()
    rows = store.connection().execute("SELECT state, attempts, last_error FROM outbox").fetchall()
    assert rows and all(r["state"] == "pending" and r["attempts"] == 1 for r in rows)
    assert all(r["last_error"] for r in rows)
    assert store.due_outbox() == []  # backing off, not hammering the destination


def test_an_unforeseen_send_failure_backs_off_that_item_alone(
    store: SqliteStore, synth_studies: SynthStudies, screener: Screener
) -> None:
    study = _receive(store, synth_studies)
    _worker(store, screener).run_once()
    assert _recorded(store, study).status == "analyzed"
    items = store.due_outbox()
    assert len(items) >= 2
    poisoned = items[0].path
    sent: list[Path] = []

    def send(path: Path, destination: object) -> None:
        if path == poisoned:
            raise ValueError("a peer's answer broke the client")
        sent.append(path)

    assert OutboxWorker(store, calling_ae="DIAGNOSTICS", sender=send).run_once()
    assert sorted(sent) == sorted(i.path for i in items[1:])  # the rest went out
    rows = store.connection().execute("SELECT state, last_error FROM outbox").fetchall()
    failed = [r for r in rows if r["state"] == "pending"]
    assert len(failed) == 1 and failed[0]["last_error"] == "internal error (ValueError)"


def test_a_study_that_keeps_killing_the_screener_is_failed_not_retried(
    tmp_path: Path, synth_studies: SynthStudies, screener: Screener
) -> None:
    store = SqliteStore(tmp_path / "store", lease_s=0.05)
    study = _receive(store, synth_studies)
    for attempt in range(1, MAX_TRIES + 1):
        (claim,) = store.claim_due(stable_s=0)  # ...and the process dies screening it
        assert claim.tries == attempt
        time.sleep(0.1)
    _worker(store, screener).run_once()
    result = _recorded(store, study)
    _failed_with(result, f"interrupted {MAX_TRIES} times")
    assert "not retried" in str(result.reason)


def test_a_shutdown_does_not_count_as_a_try(
    store: SqliteStore, synth_studies: SynthStudies
) -> None:
    study = _receive(store, synth_studies)
    for _ in range(MAX_TRIES + 2):
        (claim,) = store.claim_due(stable_s=0)
        store.release(claim)  # stopped before it was screened
    assert store.study_state(study)["tries"] == 0  # type: ignore[index]


def test_a_restart_takes_over_its_dead_predecessors_claims_at_once(
    store: SqliteStore, synth_studies: SynthStudies
) -> None:
    dead = _receive(store, synth_studies, 0)
    live = _receive(store, synth_studies, 1)
    assert len(store.claim_due(stable_s=0)) == 2
    gone = subprocess.Popen(["true"])
    gone.wait()  # its process id no longer runs
    with sqlite3.connect(store.db_path) as db:
        db.execute(
            "UPDATE studies SET claimed_by = ? WHERE study_instance_uid = ?",
            (f"{socket.gethostname()}:{gone.pid}", dead),
        )
    assert store.recover() == 1  # the other claim is this (live) process's, within its lease
    assert store.study_state(dead)["state"] == "waiting"  # type: ignore[index]
    assert store.study_state(live)["state"] == "screening"  # type: ignore[index]


def test_reasons_hold_no_server_paths() -> None:
    text = "the image could not be read: /srv/diagnostics/instances/0a1b.dcm: truncated"
    assert plain(text) == "the image could not be read: 0a1b.dcm: truncated"
    assert plain("/srv/diagnostics/") == "no details"  # never an empty reason


def test_an_old_store_gains_the_lease_columns(tmp_path: Path, synth_studies: SynthStudies) -> None:
    store = SqliteStore(tmp_path)
    study = _receive(store, synth_studies)
    db = sqlite3.connect(tmp_path / "intake.sqlite3")
    db.execute("ALTER TABLE studies DROP COLUMN lease_until")
    db.execute("ALTER TABLE studies DROP COLUMN tries")
    db.execute(
        "UPDATE studies SET state = 'screening', claimed_at = ?", (time.time() - 3600,)
    )  # claimed by an old version that died long ago
    db.commit()
    db.close()
    reopened = SqliteStore(tmp_path)
    (claim,) = reopened.claim_due(stable_s=0)  # its claim had no lease: claimed_at + lease
    assert claim.study_instance_uid == study and claim.tries == 1
