"""The durable intake store: what is acknowledged is on disk, once, under our own names.

Every test runs on both backends (the `database` fixture): SQLite and a real PostgreSQL."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest

from diagnostics.errors import DuplicateInstanceError, InputError
from diagnostics.results import InstanceResult, ModelRef, StudyResult
from diagnostics.service.workers import backoff
from diagnostics.store import Store
from diagnostics.store.records import Delivery
from tests.helpers.synth import SynthStudies

MakeStore = Callable[..., Store]
"""`make_store(root)`: a store on the test's backend (`database` fixture: SQLite, PostgreSQL)."""


def _expire_leases(store: Store) -> None:
    with store.sql_transaction() as db:  # type: ignore[attr-defined]
        db.execute("UPDATE studies SET lease_until = ?", (time.time() - 1,))


def _bytes(synth_studies: SynthStudies, index: int) -> bytes:
    folder, truths = synth_studies
    return (folder / truths[index].file).read_bytes()


def _result(study: str) -> StudyResult:
    return StudyResult(
        study_instance_uid=study,
        status="not_analyzed",
        reason="test",
        model=ModelRef(name="m", version="1.0.0", sha256="0" * 64),
        instances=[InstanceResult(sop_instance_uid="1.2", status="not_analyzed", reason="test")],
    )


def test_receive_writes_file_and_row_once(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies
) -> None:
    store = make_store(tmp_path)
    data = _bytes(synth_studies, 0)
    first = store.receive(data, "test")
    again = store.receive(data, "test")
    assert not first.duplicate and again.duplicate
    files = list(store.instances_dir.iterdir())
    assert len(files) == 1 and files[0].read_bytes() == data
    assert re.fullmatch(r"[0-9a-f]{32}\.dcm", files[0].name)
    assert store.counts()["instances"] == 1 and store.counts()["studies_waiting"] == 1
    assert not list(store.incoming_dir.iterdir())


def test_every_acknowledged_instance_is_audited_with_its_uids(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies
) -> None:
    store = make_store(tmp_path)
    data = _bytes(synth_studies, 0)
    first = store.receive(data, "dimse:ORTHANC", address="10.1.2.3")
    store.receive(data, "dimse:ORTHANC", address="10.1.2.3")  # resent: audited as such
    with pytest.raises(InputError):
        store.receive(b"not dicom", "dimse:ORTHANC")  # refused: not stored, not audited here
    rows = store.audit_entries("instance_stored")
    assert [row["detail"]["resent"] for row in rows] == [False, True]  # type: ignore[index]
    for row in rows:
        assert row["actor"] == "dimse:ORTHANC"
        detail = row["detail"]
        assert isinstance(detail, dict)
        assert detail["study"] == first.study_instance_uid
        assert detail["sop"] == first.sop_instance_uid
        assert detail["address"] == "10.1.2.3"
    assert store.verify_audit().problem is None


def test_an_audit_outcome_is_a_code_never_a_word(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store(tmp_path)
    with pytest.raises(TypeError, match="RFC 3881"):  # "failed" must not be stored as success
        store.audit("cli", "backup", outcome="failed")
    store.audit("cli", "backup", outcome=8)
    (entry,) = store.audit_entries("backup")
    assert entry["outcome"] == 8


def test_file_names_never_come_from_the_header(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies
) -> None:
    folder, truths = synth_studies
    ds = pydicom.dcmread(folder / truths[1].file)
    ds.PatientID = "../../etc/passwd"
    ds.SeriesDescription = "/tmp/evil"
    path = tmp_path / "evil.dcm"
    ds.save_as(path)
    store = make_store(tmp_path / "store")
    store.receive(path.read_bytes(), "test")
    (stored,) = store.instances_dir.iterdir()
    assert stored.parent == store.instances_dir and re.fullmatch(r"[0-9a-f]{32}\.dcm", stored.name)


def test_bad_input_is_refused_and_leaves_nothing(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store(tmp_path)
    with pytest.raises(InputError):
        store.receive(b"not a DICOM file at all", "test")
    assert store.counts()["instances"] == 0
    assert not list(store.instances_dir.iterdir()) and not list(store.incoming_dir.iterdir())


def test_study_waits_for_quiet_then_versions(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies
) -> None:
    store = make_store(tmp_path)
    received = store.receive(_bytes(synth_studies, 0), "test")
    assert store.claim_due(stable_s=60) == []  # not quiet long enough
    (claim,) = store.claim_due(stable_s=0)
    assert claim.study_instance_uid == received.study_instance_uid and len(claim.paths) == 1
    assert store.complete(claim, _result(claim.study_instance_uid)) == 1
    # A late instance of the same study sends it back to the queue for version 2.
    ds = pydicom.dcmread(synth_studies[0] / synth_studies[1][0].file)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    late = tmp_path / "late.dcm"
    ds.save_as(late)
    store.receive(late.read_bytes(), "test")
    (claim,) = store.claim_due(stable_s=0)
    assert len(claim.paths) == 2
    assert store.complete(claim, _result(claim.study_instance_uid)) == 2
    version, _ = store.latest_result(claim.study_instance_uid) or (0, None)
    assert version == 2


def test_result_of_a_changed_study_is_dropped(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies
) -> None:
    store = make_store(tmp_path)
    store.receive(_bytes(synth_studies, 0), "test")
    (claim,) = store.claim_due(stable_s=0)
    time.sleep(0.01)
    ds = pydicom.dcmread(synth_studies[0] / synth_studies[1][0].file)
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    path = tmp_path / "during.dcm"
    ds.save_as(path)
    store.receive(path.read_bytes(), "test")  # arrives while the study is being screened
    assert (
        store.complete(
            claim, _result(claim.study_instance_uid), [Delivery("X@h:1", tmp_path / "SR.dcm")]
        )
        is None
    )
    assert store.latest_result(claim.study_instance_uid) is None
    assert store.counts()["outbox_pending"] == 0
    (again,) = store.claim_due(stable_s=0)
    assert len(again.paths) == 2


def test_recover_requeues_interrupted_studies(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies
) -> None:
    store = make_store(tmp_path)
    store.receive(_bytes(synth_studies, 0), "test")
    assert len(store.claim_due(stable_s=0)) == 1
    old = store.incoming_dir / "old.dcm.partial"
    old.write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    fresh = store.incoming_dir / "fresh.dcm.partial"  # another process may be writing it
    fresh.write_bytes(b"half")
    reopened = make_store(tmp_path)  # as after a crash
    assert reopened.recover() == 0  # within its lease: it may be another live process's
    _expire_leases(store)  # its process died a lease ago
    assert reopened.recover() == 1
    assert list(reopened.incoming_dir.iterdir()) == [fresh]
    assert len(reopened.claim_due(stable_s=0)) == 1


def test_outbox_retries_with_backoff(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies
) -> None:
    store = make_store(tmp_path)
    store.receive(_bytes(synth_studies, 0), "test")
    (claim,) = store.claim_due(stable_s=0)
    store.complete(
        claim,
        _result(claim.study_instance_uid),
        [Delivery("PACS@127.0.0.1:1", tmp_path / "SR.dcm")],
    )
    (item,) = store.due_outbox()
    store.mark_failed(item, "refused", retry_in_s=60)
    assert store.due_outbox() == [] and store.counts()["outbox_pending"] == 1
    assert [backoff(n) for n in (1, 2, 3, 20)] == [2.0, 4.0, 8.0, 300.0]


def test_audit_records_who_did_what(make_store: MakeStore, tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.audit("dimse:ORTHANC", "association_rejected", address="127.0.0.1")
    (entry,) = store.audit_entries("association_rejected")
    assert entry["actor"] == "dimse:ORTHANC" and entry["detail"] == {"address": "127.0.0.1"}


def test_same_instance_under_another_study_is_refused(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies
) -> None:
    store = make_store(tmp_path)
    folder, truths = synth_studies
    store.receive(_bytes(synth_studies, 0), "test")
    ds = pydicom.dcmread(folder / truths[0].file)
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    moved = tmp_path / "moved.dcm"
    ds.save_as(moved)
    with pytest.raises(DuplicateInstanceError, match="already stored in another study"):
        store.receive(moved.read_bytes(), "test")
    assert store.counts()["instances"] == 1


def test_a_claim_past_its_lease_is_taken_over(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies
) -> None:
    store = make_store(tmp_path)
    store.receive(_bytes(synth_studies, 0), "test")
    (first,) = store.claim_due(stable_s=0)
    assert store.claim_due(stable_s=0) == []  # held
    _expire_leases(store)  # as if its process died a lease ago
    (second,) = store.claim_due(stable_s=0)
    assert second.tries == 2  # the first claim ended without a result
    assert store.complete(second, _result(second.study_instance_uid)) == 1
    # The first claimant finishing late records nothing: the claim is no longer its own.
    assert store.complete(first, _result(first.study_instance_uid)) is None
