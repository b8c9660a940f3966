"""Worklist priority: the model raises but never lowers, waiting escalates, and the SQL pages
10,000 studies in that order from the index without sorting them."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from diagnostics.errors import RequestError
from diagnostics.service.review import mark_read, set_requested_priority
from diagnostics.store import Store
from diagnostics.store.priority import (
    WorklistFilter,
    base_rank,
    effective_priority,
    from_dimse,
    sort_key,
)
from diagnostics.store.sqlite import SqliteStore
from diagnostics.store.sqlite.worklist import RANK_SQL, clause, group_query
from tests.helpers.synth import SynthStudies

HOUR = 3600.0
NOW = 1_800_000_000.0

MakeStore = Callable[..., Store]
"""`make_store(root)`: a store on the test's backend (SQLite, PostgreSQL: `database`)."""


@pytest.mark.parametrize(
    ("requested", "model", "expected"),
    [
        (None, None, "routine"),
        (None, "routine", "routine"),
        (None, "urgent", "urgent"),
        ("routine", "urgent", "urgent"),  # the model may raise a routine request
        ("urgent", "routine", "urgent"),  # ... but never lower an urgent one
        ("stat", "urgent", "stat"),  # ... nor a stat one
        ("stat", None, "stat"),
    ],
)
def test_effective_priority_is_the_higher_of_request_and_model(
    requested: str | None, model: str | None, expected: str
) -> None:
    assert effective_priority(requested, model, NOW, None, NOW, HOUR) == expected


def test_only_unread_routine_studies_escalate_after_the_limit() -> None:
    old, fresh = NOW - 2 * HOUR, NOW - 0.5 * HOUR
    assert effective_priority(None, "routine", old, None, NOW, HOUR) == "escalated"
    assert effective_priority(None, "routine", fresh, None, NOW, HOUR) == "routine"
    assert effective_priority(None, "routine", old, NOW - 10, NOW, HOUR) == "routine"  # read
    assert effective_priority(None, "urgent", old, None, NOW, HOUR) == "urgent"
    assert effective_priority("stat", None, old, None, NOW, HOUR) == "stat"
    # Escalated studies sort with the urgent ones, by time waiting: an old routine study comes
    # before a newer flagged one, so flags cannot starve the queue.
    assert sort_key(None, "routine", old, None, NOW, HOUR) < sort_key(
        None, "urgent", fresh, None, NOW, HOUR
    )
    assert sort_key("stat", None, fresh, None, NOW, HOUR) < sort_key(
        None, "routine", old, None, NOW, HOUR
    )


def test_dimse_priority_high_asks_for_urgent_and_nothing_else_asks() -> None:
    assert from_dimse(1) == "urgent"
    assert from_dimse(0) is None and from_dimse(2) is None and from_dimse(None) is None
    assert base_rank(from_dimse(1), None) == 1


def test_requests_from_the_sender_raise_and_never_lower(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies
) -> None:
    folder, truths = synth_studies
    store = make_store(tmp_path)
    uid = truths[0].study_instance_uid
    store.receive((folder / truths[0].file).read_bytes(), "dimse:PACS", requested_priority=None)
    assert store.study_state(uid)["requested_priority"] is None  # type: ignore[index]
    set_requested_priority(store, uid, "urgent", "token:abc123")
    for sent in (None, "routine"):
        # A later instance of the same study that asks for less changes nothing.
        store.receive(_copy(folder / truths[0].file, tmp_path), "dimse:PACS", sent)
        assert store.study_state(uid)["requested_priority"] == "urgent"  # type: ignore[index]
    store.receive(_copy(folder / truths[0].file, tmp_path), "dimse:PACS", "stat")
    assert store.study_state(uid)["requested_priority"] == "stat"  # type: ignore[index]
    # A person may lower it (the model still cannot).
    set_requested_priority(store, uid, "routine", "token:abc123")
    assert store.study_state(uid)["requested_priority"] == "routine"  # type: ignore[index]
    with pytest.raises(RequestError, match="priority must be one of"):
        set_requested_priority(store, uid, "whenever", "token:abc123")
    changes = store.audit_entries("priority_set")
    assert [e["detail"]["priority"] for e in changes] == ["urgent", "routine"]  # type: ignore[index]
    assert all(e["actor"] == "token:abc123" for e in changes)


def _copy(path: Path, tmp: Path) -> bytes:
    """The same study with a new SOP Instance UID (a second instance of it)."""
    import pydicom
    from pydicom.uid import generate_uid

    ds = pydicom.dcmread(path)
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    out = tmp / f"{ds.SOPInstanceUID}.dcm"
    ds.save_as(out, enforce_file_format=True)
    return out.read_bytes()


# -- the SQL ---------------------------------------------------------------------------------


def _fill(store: Store, n: int, seed: int) -> list[tuple[str, ...]]:
    """n studies straight into the table: every mix of request, model flag, age and read mark."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        first = NOW - rng.uniform(0, 6 * HOUR)
        status = rng.choice(["analyzed", "analyzed", "not_analyzed", "failed", None])
        model = rng.choice(["urgent", "routine", "routine"]) if status == "analyzed" else None
        flagged = rng.choice(["nodule", "consolidation", "nodule,cardiomegaly"]) if model else ""
        if model == "routine":
            flagged = ""
        requested = rng.choice([None, None, None, None, "stat", "urgent", "routine"])
        reviewed = NOW - 60 if rng.random() < 0.2 else None
        rows.append(
            (
                f"2.25.{seed}{i:06d}",
                "done" if status else "waiting",
                first,
                first + 5,
                1,
                1 if status else 0,
                status,
                model,
                flagged,
                requested,
                reviewed,
            )
        )
    with store.sql_transaction() as db:  # type: ignore[attr-defined]
        for row in rows:  # one statement per row: both backends' connections take it
            db.execute(
                "INSERT INTO studies (study_instance_uid, state, first_received, last_received, "
                "instance_count, version, status, priority, flagged, requested_priority, "
                "reviewed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
    return rows  # type: ignore[return-value]


def _expected(rows: list[tuple[object, ...]], keep: object = None) -> list[str]:
    chosen = [r for r in rows if keep is None or keep(r)]  # type: ignore[operator]
    chosen.sort(key=lambda r: sort_key(r[9], r[7], r[2], r[10], NOW, HOUR))  # type: ignore[arg-type]
    return [str(r[0]) for r in chosen]


def _all_pages(store: Store, where: WorklistFilter | None = None, size: int = 37) -> list[str]:
    uids: list[str] = []
    offset = 0
    while True:
        total, page = store.worklist(
            where=where, limit=size, offset=offset, now=NOW, escalate_after_s=HOUR
        )
        uids += [r.study_instance_uid for r in page]
        offset += size
        if offset >= total:
            assert len(uids) == total
            return uids


def test_sql_order_and_paging_agree_with_the_priority_rules(
    make_store: MakeStore, tmp_path: Path
) -> None:
    store = make_store(tmp_path)
    rows = _fill(store, 600, seed=3)
    assert _all_pages(store) == _expected(rows)
    _, first = store.worklist(limit=600, now=NOW, escalate_after_s=HOUR)
    kinds = [r.effective_priority for r in first]
    assert kinds.index("routine") > max(i for i, k in enumerate(kinds) if k == "escalated")
    assert {"stat", "urgent", "escalated", "routine"} == set(kinds)


@pytest.mark.parametrize(
    ("where", "keep"),
    [
        (WorklistFilter(status="failed"), lambda r: r[6] == "failed"),
        (WorklistFilter(status="pending"), lambda r: r[6] is None),
        (WorklistFilter(finding="cardiomegaly"), lambda r: "cardiomegaly" in r[8]),
        (WorklistFilter(read=True), lambda r: r[10] is not None),
        (
            WorklistFilter(received_from=NOW - 3 * HOUR, received_before=NOW - HOUR),
            lambda r: NOW - 3 * HOUR <= r[2] < NOW - HOUR,
        ),
    ],
)
def test_filters_keep_the_order(
    make_store: MakeStore, tmp_path: Path, where: WorklistFilter, keep: object
) -> None:
    store = make_store(tmp_path)
    rows = _fill(store, 400, seed=5)
    assert _all_pages(store, where, size=23) == _expected(rows, keep)


def test_reading_a_study_stops_its_escalation(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies
) -> None:
    folder, truths = synth_studies
    store = make_store(tmp_path)
    uid = truths[1].study_instance_uid
    store.receive((folder / truths[1].file).read_bytes(), "test")
    later = time.time() + 2 * HOUR
    (row,) = store.worklist(now=later, escalate_after_s=HOUR)[1]
    assert row.effective_priority == "escalated"
    mark_read(store, uid, "token:abc123")
    (row,) = store.worklist(now=later, escalate_after_s=HOUR)[1]
    assert row.effective_priority == "routine" and row.reviewed_at is not None
    assert [e["action"] for e in store.audit_entries("study_read")] == ["study_read"]


def test_ten_thousand_studies_page_from_the_index_without_sorting(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path)
    _fill(store, 10_000, seed=7)
    db = store.connection()
    db.execute("ANALYZE")
    cutoff = NOW - HOUR
    arms = [
        (f"{RANK_SQL} = 1", []),
        (f"{RANK_SQL} = 2 AND first_received < ? AND reviewed_at IS NULL", [cutoff]),
    ]
    for where in (WorklistFilter(), WorklistFilter(status="analyzed", read=False)):
        extra, params = clause(where)
        query, all_params = group_query(arms, extra, params)
        plan = [str(r[3]) for r in db.execute("EXPLAIN QUERY PLAN " + query, [*all_params, 50, 0])]
        assert sum("USING INDEX studies_priority" in step for step in plan) == 2, plan
        assert not any("TEMP B-TREE" in step for step in plan), plan
        assert not any(step.startswith("SCAN studies") for step in plan), plan
    started = time.perf_counter()
    for page in range(0, 10_000, 1000):
        total, rows = store.worklist(limit=50, offset=page, now=NOW, escalate_after_s=HOUR)
        assert total == 10_000 and len(rows) == 50
    per_page = (time.perf_counter() - started) / 10
    assert per_page < 0.25, f"{per_page * 1000:.0f} ms per page"  # ~5 ms here; generous for CI


def test_a_c_store_with_priority_high_makes_its_study_urgent(
    tmp_path: Path, synth_studies: SynthStudies
) -> None:
    import pydicom
    from pynetdicom import AE
    from pynetdicom.sop_class import DigitalXRayImageStorageForPresentation  # type: ignore[attr-defined]

    from diagnostics.service.listener import DicomListener

    folder, truths = synth_studies
    store = SqliteStore(tmp_path)
    listener = DicomListener(
        store, ae_title="DIAGNOSTICS", port=0, allowed_callers=["PACS"], host="127.0.0.1"
    )
    listener.start()
    try:
        ae = AE(ae_title="PACS")
        sent = [pydicom.dcmread(folder / truths[i].file) for i in (0, 1)]
        for ds in sent:  # one context per transfer syntax, as storescu does
            syntax = ds.file_meta.TransferSyntaxUID
            ae.add_requested_context(DigitalXRayImageStorageForPresentation, [syntax])
        assoc = ae.associate("127.0.0.1", listener.port, ae_title="DIAGNOSTICS")
        assert assoc.is_established
        for ds, priority in zip(sent, (1, 0), strict=True):  # HIGH, then MEDIUM
            assert assoc.send_c_store(ds, priority=priority).Status == 0x0000
        assoc.release()
    finally:
        listener.stop()
    high, medium = (store.study_state(truths[i].study_instance_uid) for i in (0, 1))
    assert high is not None and high["requested_priority"] == "urgent"
    assert medium is not None and medium["requested_priority"] is None
