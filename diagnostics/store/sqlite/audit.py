"""The audit table in SQLite: hash-chained rows, their migration, queries and verification.

Each row's `hash` is SHA-256 over the previous row's hash and the row's own canonical content
(`canonical`), written in the same transaction as the row. Every audit write runs inside a
`BEGIN IMMEDIATE` transaction and SQLite lets one writer in at a time, so the chain stays
linear across the HTTP workers and the DICOM listener. `AUTOINCREMENT` keeps ids contiguous
(a rolled-back insert gives its id back) and remembers the highest id in `sqlite_sequence`,
so a gap in the ids or a missing tail is a deletion. In PostgreSQL the lock row `audit_seq`
plays both parts: it serialises appends across nodes and remembers the highest id.

What the chain cannot do alone: someone with write access who recomputes every hash after
the row they change leaves a valid chain. The newest hash (`ChainReport.head`, printed by
`diagnostics audit --verify`) recorded outside the machine closes that door.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
import time
from collections.abc import Iterator

from diagnostics.errors import StoreError
from diagnostics.store.audit import (
    SUCCESS,
    AuditEntry,
    AuditFilter,
    ChainReport,
    Problem,
    outcome_of,
)
from diagnostics.store.sql import POSTGRESQL, Connection, Row, dialect

COLUMNS: tuple[tuple[str, str], ...] = (
    ("study_instance_uid", "TEXT"),
    ("sop_instance_uid", "TEXT"),
    ("address", "TEXT"),
    ("outcome", "INTEGER NOT NULL DEFAULT 0"),
    ("hash", "TEXT"),
)
"""Added to the first `audit (id, at, actor, action, detail)` table (`migrate`)."""

INDEXES = (
    "CREATE INDEX IF NOT EXISTS audit_by_at ON audit (at)",
    "CREATE INDEX IF NOT EXISTS audit_by_study ON audit (study_instance_uid)",
)
SELECT = (
    "SELECT id, at, actor, action, study_instance_uid, sop_instance_uid, address, outcome, "
    "detail, hash FROM audit"
)
HEX64 = re.compile(r"[0-9a-f]{64}")


def canonical(row: Row | tuple[object, ...]) -> str:
    """The content a row's hash covers, in a form that reads back the same from SQLite."""
    values = [row[i] for i in range(9)]  # id .. detail, in SELECT order
    return json.dumps(values, ensure_ascii=True, separators=(",", ":"))


def chain_hash(previous: str | None, content: str) -> str:
    return hashlib.sha256(f"{previous or ''}\n{content}".encode()).hexdigest()


def write(
    db: Connection,
    actor: str,
    action: str,
    *,
    study: object = None,
    sop: object = None,
    address: object = None,
    outcome: object = None,
    **detail: object,
) -> None:
    """Append one row to the chain, inside the caller's transaction (or one of its own)."""
    if not db.in_transaction:
        db.execute("BEGIN IMMEDIATE")
        try:
            write(
                db, actor, action, study=study, sop=sop, address=address, outcome=outcome, **detail
            )
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return
    if outcome is not None and (not isinstance(outcome, int) or isinstance(outcome, bool)):
        # A word such as "failed" would otherwise fall back to the action's default: success.
        raise TypeError(f"audit outcome must be an RFC 3881 code (0, 4, 8, 12), not {outcome!r}")
    values = (
        time.time(),
        actor,
        action,
        None if study is None else str(study),
        None if sop is None else str(sop),
        None if address is None else str(address),
        outcome if isinstance(outcome, int) else outcome_of(action),
        json.dumps(detail, sort_keys=True, default=str),
    )
    if dialect(db) == POSTGRESQL:
        # The lock row serialises appends across every node until this transaction ends, and
        # gives contiguous ids (a sequence would leave a gap at each rollback: a "deletion").
        row_id = int(db.execute("UPDATE audit_seq SET seq = seq + 1 RETURNING seq").fetchone()[0])
        db.execute(
            "INSERT INTO audit (id, at, actor, action, study_instance_uid, sop_instance_uid, "
            "address, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (row_id, *values),
        )
    else:
        row_id = int(
            db.execute(
                "INSERT INTO audit (at, actor, action, study_instance_uid, sop_instance_uid, "
                "address, outcome, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                values,
            ).fetchone()[0]
        )
    _seal(db, row_id)


def _seal(db: Connection, row_id: int) -> str:
    """Store a row's hash, chained on the row before it."""
    previous = db.execute(
        "SELECT hash FROM audit WHERE id < ? ORDER BY id DESC LIMIT 1", (row_id,)
    ).fetchone()
    row = db.execute(SELECT + " WHERE id = ?", (row_id,)).fetchone()
    digest = chain_hash(previous[0] if previous else None, canonical(row))
    db.execute("UPDATE audit SET hash = ? WHERE id = ?", (digest, row_id))
    return digest


def migrate(db: Connection) -> None:
    """Give a store written before the chain its columns, fill them from `detail`, and chain
    its rows, once and in one transaction; later opens find `hash` and do nothing.

    Only here are rows chained after the fact: a row inserted later without a hash must stay
    detectable, never be sealed by the next start.
    """
    if _has_chain(db):
        db.execute(INDEXES[0])
        db.execute(INDEXES[1])
        return
    try:
        db.execute("BEGIN IMMEDIATE")
        try:
            if not _has_chain(db):  # another process may have migrated while we waited
                _add_chain(db)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    except sqlite3.Error as exc:
        raise StoreError(f"cannot update the audit table: {exc}") from exc


def _has_chain(db: Connection) -> bool:
    if dialect(db) == POSTGRESQL:
        return True  # created with its chain (`diagnostics.store.postgres.schema`)
    return "hash" in {r[1] for r in db.execute("PRAGMA table_info(audit)")}


def _add_chain(db: Connection) -> None:
    present = {r[1] for r in db.execute("PRAGMA table_info(audit)")}
    for column, kind in COLUMNS:
        if column not in present:
            db.execute(f"ALTER TABLE audit ADD COLUMN {column} {kind}")
    db.execute(
        "UPDATE audit SET study_instance_uid = json_extract(detail, '$.study'), "
        "address = json_extract(detail, '$.address')"
    )
    ids = [int(r[0]) for r in db.execute("SELECT id, action FROM audit ORDER BY id")]
    for row_id, action in db.execute("SELECT id, action FROM audit").fetchall():
        db.execute("UPDATE audit SET outcome = ? WHERE id = ?", (outcome_of(action), row_id))
    for row_id in ids:
        _seal(db, row_id)
    for statement in INDEXES:
        db.execute(statement)
    if ids:
        write(db, "diagnostics", "audit_chain_started", earlier_rows=len(ids))


# -- reading -----------------------------------------------------------------------------------


def entry(row: Row) -> AuditEntry:
    try:
        detail = json.loads(row["detail"])
    except ValueError:
        detail = {"unreadable_detail": True}
    return AuditEntry(
        id=int(row["id"]),
        at=float(row["at"]),
        actor=str(row["actor"]),
        action=str(row["action"]),
        study_instance_uid=row["study_instance_uid"],
        sop_instance_uid=row["sop_instance_uid"],
        address=row["address"],
        outcome=int(row["outcome"] if row["outcome"] is not None else SUCCESS),
        detail=detail if isinstance(detail, dict) else {"detail": detail},
        hash=row["hash"],
    )


def _where(f: AuditFilter) -> tuple[str, list[object]]:
    clauses: list[str] = []
    params: list[object] = []
    if f.since is not None:
        clauses.append("at >= ?")
        params.append(f.since)
    if f.until is not None:
        clauses.append("at < ?")
        params.append(f.until)
    if f.study:
        clauses.append("study_instance_uid = ?")
        params.append(f.study)
    if f.user:
        clauses.append("(actor = ? OR actor LIKE ? ESCAPE '\\')")
        escaped = f.user.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params += [f.user, "%:" + escaped]
    if f.event:
        clauses.append("action = ?")
        params.append(f.event)
    if f.outcome == "success":
        clauses.append("outcome = 0")
    elif f.outcome == "failure":
        clauses.append("outcome <> 0")
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def query(
    db: Connection,
    where: AuditFilter,
    limit: int | None = None,
    offset: int = 0,
    newest_first: bool = False,
) -> tuple[int, list[AuditEntry]]:
    """(how many rows match, the page of them asked for)."""
    require_chain(db)
    sql, params = _where(where)
    total = int(db.execute("SELECT COUNT(*) FROM audit" + sql, params).fetchone()[0])
    order = " ORDER BY id DESC" if newest_first else " ORDER BY id"
    page = " LIMIT ? OFFSET ?" if limit is not None else ""
    bound = [*params, limit, offset] if limit is not None else params
    rows = db.execute(SELECT + sql + order + page, bound).fetchall()
    return total, [entry(r) for r in rows]


def require_chain(db: Connection) -> None:
    if not _has_chain(db):
        raise StoreError(
            "the audit table predates its hash chain: start the service once (it migrates "
            "the store) before reading it"
        )


# -- verification ------------------------------------------------------------------------------


def _rows(db: Connection, batch: int) -> Iterator[Row]:
    """Every row in id order, a batch at a time (a long trail never sits in memory whole)."""
    after = -(2**63)
    while True:
        chunk = db.execute(SELECT + " WHERE id > ? ORDER BY id LIMIT ?", (after, batch)).fetchall()
        if not chunk:
            return
        yield from chunk
        after = int(chunk[-1]["id"])


def verify(db: Connection, batch: int = 5000) -> ChainReport:
    """Walk the chain from the first row; report the first row altered, deleted or inserted."""
    require_chain(db)
    rows, first_id, expected, previous = 0, None, 1, None
    walk = _rows(db, batch)
    row = next(walk, None)
    while row is not None:
        following = next(walk, None)  # telling "altered" from "inserted" needs the row after
        problem = _check(row, following, previous, expected, rows)
        if problem is not None:
            return problem
        rows += 1
        first_id = int(row["id"]) if first_id is None else first_id
        previous, expected = row["hash"], int(row["id"]) + 1
        row = following
    last_id = expected - 1 if rows else None
    highest = db.execute(
        "SELECT seq FROM audit_seq"
        if dialect(db) == POSTGRESQL
        else "SELECT seq FROM sqlite_sequence WHERE name = 'audit'"
    ).fetchone()
    if highest is not None and int(highest[0]) >= expected:
        return ChainReport(
            rows,
            first_id,
            last_id,
            previous,
            "deleted",
            expected,
            f"rows {expected} to {int(highest[0])} (the end of the trail) were deleted",
            rows,
        )
    return ChainReport(rows, first_id, last_id, previous, checked=rows)


def _check(
    row: Row,
    following: Row | None,
    previous: str | None,
    expected: int,
    checked: int,
) -> ChainReport | None:
    row_id = int(row["id"])

    def broken(kind: Problem, at: int, message: str) -> ChainReport:
        return ChainReport(checked, None, None, previous, kind, at, message, checked)

    if row_id < expected:
        return broken("inserted", row_id, f"row {row_id} was inserted before the first row")
    if row_id > expected:
        span = f"row {expected}" if row_id == expected + 1 else f"rows {expected} to {row_id - 1}"
        return broken("deleted", expected, f"{span} deleted (the chain resumes at {row_id})")
    stored = row["hash"]
    if stored == chain_hash(previous, canonical(row)):
        return None
    if not isinstance(stored, str) or not HEX64.fullmatch(stored):
        return broken("inserted", row_id, f"row {row_id} was inserted: it has no chain hash")
    if following is not None:
        if following["hash"] == chain_hash(stored, canonical(following)):
            return broken("altered", row_id, f"row {row_id} was altered after it was written")
        if following["hash"] == chain_hash(previous, canonical(following)):
            return broken("inserted", row_id, f"row {row_id} was inserted into the chain")
    return broken(
        "altered",
        row_id,
        f"row {row_id} was altered or inserted: its hash does not follow from the row before",
    )
