"""The audit trail's hash chain: intact under concurrent writers, and each kind of tampering done
with `sqlite3` directly (an altered row, a deleted row, a deleted tail, an inserted row) is
found by `diagnostics audit --verify`, which names the row and exits 1."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import threading
from pathlib import Path

import pytest

from diagnostics.errors import RequestError
from diagnostics.store import AuditFilter, read_audit, verify_audit
from diagnostics.store.audit import MINOR_FAILURE, SUCCESS, parse_when
from diagnostics.store.sqlite import SqliteStore
from tests.helpers.cli import run_cli

STUDY = "1.2.826.0.1.3680043.8.498.1"
SOP = "1.2.826.0.1.3680043.8.498.2"


def _filled(root: Path) -> SqliteStore:
    store = SqliteStore(root)
    store.audit("dimse:ORTHANC", "association_rejected", address="192.0.2.9")
    store.audit("dimse:ORTHANC", "instance_stored", study=STUDY, sop=SOP, address="192.0.2.9")
    with store.transaction() as tx:
        tx.audit("screening-worker", "study_screened", study=STUDY, version=1, status="analyzed")
    store.audit("token:ab12cd", "result_read", study=STUDY)
    store.audit("client:192.0.2.7", "auth_failed", count=3, address="192.0.2.7")
    return store


def _sql(root: Path, statement: str, *params: object) -> None:
    db = sqlite3.connect(root / "intake.sqlite3")
    with db:
        db.execute(statement, params)
    db.close()


def test_rows_carry_the_atna_fields_and_the_chain_verifies(tmp_path: Path) -> None:
    _filled(tmp_path).close()
    report = verify_audit(tmp_path)
    assert report.ok and report.rows == 5 and (report.first_id, report.last_id) == (1, 5)
    _, rows = read_audit(tmp_path, AuditFilter())
    stored = rows[1]
    assert (stored.actor, stored.action, stored.address) == (
        "dimse:ORTHANC",
        "instance_stored",
        "192.0.2.9",
    )
    assert (stored.study_instance_uid, stored.sop_instance_uid) == (STUDY, SOP)
    assert [r.outcome for r in rows] == [MINOR_FAILURE, SUCCESS, SUCCESS, SUCCESS, MINOR_FAILURE]
    assert rows[2].detail == {"version": 1, "status": "analyzed"}
    assert len({r.hash for r in rows}) == 5


@pytest.mark.parametrize(
    ("tamper", "kind", "row"),
    [
        (
            'UPDATE audit SET detail = \'{"version": 2, "status": "analyzed"}\' WHERE id = 3',
            "altered",
            3,
        ),
        ("UPDATE audit SET actor = 'token:000000' WHERE id = 4", "altered", 4),
        ("UPDATE audit SET at = at - 3600 WHERE id = 1", "altered", 1),
        ("DELETE FROM audit WHERE id = 2", "deleted", 2),
        ("DELETE FROM audit WHERE id = 5", "deleted", 5),
        (
            "INSERT INTO audit (at, actor, action, detail) "
            "VALUES (0, 'forger', 'result_read', '{}')",
            "inserted",
            6,
        ),
        (
            "INSERT INTO audit (id, at, actor, action, detail, hash) "
            "VALUES (0, 0, 'forger', 'ui_sign_in', '{}', (SELECT hash FROM audit WHERE id = 1))",
            "inserted",
            0,
        ),
    ],
)
def test_tampering_is_found_and_named(tmp_path: Path, tamper: str, kind: str, row: int) -> None:
    _filled(tmp_path).close()
    assert verify_audit(tmp_path).ok
    _sql(tmp_path, tamper)
    report = verify_audit(tmp_path)
    assert (report.problem, report.problem_id) == (kind, row), report


def test_verify_command_exits_1_naming_the_row(tmp_path: Path) -> None:
    _filled(tmp_path).close()
    intact = run_cli("audit", "--storage", tmp_path, "--verify", "--format", "text")
    assert intact.returncode == 0 and "intact: 5 rows" in intact.stdout, intact.stderr
    _sql(tmp_path, "DELETE FROM audit WHERE id = 4")
    result = run_cli("audit", "--storage", tmp_path, "--verify")
    assert result.returncode == 1, result.stderr
    verdict = json.loads(result.stdout)
    assert verdict["ok"] is False and verdict["problem_id"] == 4
    assert verdict["problem"] == "deleted" and "row 4 deleted" in verdict["message"]


def test_a_forged_row_in_the_middle_is_found(tmp_path: Path) -> None:
    """Delete a row and put a forged one in its place, hash copied from a genuine row."""
    _filled(tmp_path).close()
    _sql(tmp_path, "DELETE FROM audit WHERE id = 3")
    _sql(
        tmp_path,
        "INSERT INTO audit (id, at, actor, action, detail, hash) VALUES "
        "(3, 1, 'forger', 'study_read', '{}', (SELECT hash FROM audit WHERE id = 2))",
    )
    report = verify_audit(tmp_path)
    assert not report.ok and report.problem_id == 3


def _write_rows(root: str, name: str, count: int) -> None:
    """One writer process: `count` rows, half alone and half inside bigger transactions."""
    store = SqliteStore(root)
    for n in range(count):
        if n % 2:
            store.audit(f"writer:{name}", "result_read", study=f"1.2.3.{n}")
        else:
            with store.transaction() as tx:
                tx.audit(f"writer:{name}", "study_read", study=f"1.2.3.{n}")
                tx.set_reviewed(f"1.2.3.{n}", 1.0)
    store.close()


def test_concurrent_writers_keep_one_linear_chain(tmp_path: Path) -> None:
    SqliteStore(tmp_path).close()
    # fork: the children start at once with the modules loaded (no store connection is open)
    spawn = multiprocessing.get_context("fork")
    processes = [
        spawn.Process(target=_write_rows, args=(str(tmp_path), f"p{i}", 40)) for i in range(3)
    ]
    threads = [
        threading.Thread(target=_write_rows, args=(str(tmp_path), f"t{i}", 40)) for i in range(2)
    ]
    for worker in [*processes, *threads]:
        worker.start()
    for thread in threads:
        thread.join(120)
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    report = verify_audit(tmp_path)
    assert report.ok, report
    assert report.rows == 200 and report.last_id == 200
    _, rows = read_audit(tmp_path, AuditFilter())
    assert len({r.actor for r in rows}) == 5


def test_an_older_store_is_migrated_and_chained_once(tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "intake.sqlite3")
    db.execute(
        "CREATE TABLE audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at REAL NOT NULL, "
        "actor TEXT NOT NULL, action TEXT NOT NULL, detail TEXT NOT NULL)"
    )
    db.executemany(
        "INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
        [
            (1.5, "dimse:OLD", "association_rejected", json.dumps({"address": "192.0.2.1"})),
            (2.5, "token:ab12cd", "result_read", json.dumps({"study": STUDY})),
        ],
    )
    db.commit()
    db.close()
    store = SqliteStore(tmp_path)
    store.audit("token:ab12cd", "worklist_read", count=1)
    store.close()
    SqliteStore(tmp_path).close()  # a second open changes nothing

    report = verify_audit(tmp_path)
    assert report.ok and report.rows == 4, report
    _, rows = read_audit(tmp_path, AuditFilter())
    assert [r.action for r in rows] == [
        "association_rejected",
        "result_read",
        "audit_chain_started",
        "worklist_read",
    ]
    assert rows[0].address == "192.0.2.1" and rows[0].outcome == MINOR_FAILURE
    assert rows[1].study_instance_uid == STUDY and rows[2].detail == {"earlier_rows": 2}
    # last_actor reads the new column for rows written before it existed too.
    assert SqliteStore(tmp_path).view().last_actor("result_read", STUDY) == "token:ab12cd"


def test_time_bounds_read_ages_dates_and_zones() -> None:
    now = 1_800_000_000.0
    assert parse_when("7d", now=now) == now - 7 * 86400
    assert parse_when("30m", now=now) == now - 1800
    assert parse_when("2026-12-01") == parse_when("2026-12-01T00:00:00+00:00")
    assert parse_when("2026-12-01", end=True) - parse_when("2026-12-01") == 86400
    assert parse_when("2026-12-01T10:00+02:00") == parse_when("2026-12-01T08:00Z")
    with pytest.raises(RequestError, match="is not a time"):
        parse_when("last tuesday")
