"""Durable intake: every acknowledged instance is on disk and recorded before the sender hears OK.

One SQLite database in WAL mode (several processes may read and write it: the HTTP workers
and the DICOM listener) beside a folder of instance files named by our own identifiers, never
by anything read from a DICOM header. A study moves `waiting` -> `screening` -> `done`; an
instance arriving for a study that is already done sends it back to `waiting`, and the next
result gets the next version and supersedes the previous one. After a crash, studies left in
`screening` go back to `waiting`, so nothing acknowledged is lost or screened twice.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from diagnostics.dicom.header import ReadLimits
from diagnostics.dicom.reader import read_info
from diagnostics.errors import StoreError
from diagnostics.results import StudyResult

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    study_instance_uid TEXT NOT NULL,
    series_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    received_at REAL NOT NULL,
    source TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_by_study ON instances (study_instance_uid);
CREATE TABLE IF NOT EXISTS studies (
    study_instance_uid TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('waiting', 'screening', 'done')),
    first_received REAL NOT NULL,
    last_received REAL NOT NULL,
    instance_count INTEGER NOT NULL,
    claimed_at REAL,
    version INTEGER NOT NULL DEFAULT 0,
    status TEXT,
    priority TEXT,
    flagged TEXT
);
CREATE INDEX IF NOT EXISTS studies_by_state ON studies (state, last_received);
CREATE INDEX IF NOT EXISTS studies_worklist ON studies (
    (CASE WHEN priority = 'urgent' THEN 0 ELSE 1 END), first_received
);
CREATE TABLE IF NOT EXISTS results (
    study_instance_uid TEXT NOT NULL,
    version INTEGER NOT NULL,
    created REAL NOT NULL,
    instance_count INTEGER NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (study_instance_uid, version)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study_instance_uid TEXT NOT NULL,
    version INTEGER NOT NULL,
    path TEXT NOT NULL,
    destination TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'sent')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (state, next_attempt);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    detail TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Received:
    """What intake recorded for one instance."""

    sop_instance_uid: str
    study_instance_uid: str
    duplicate: bool
    sop_class_uid: str | None = None
    """For STOW-RS responses, which name each instance by class and instance UID."""


@dataclass(frozen=True)
class WorklistRow:
    """One study as the worklist shows it (no patient data: UIDs and our own fields only)."""

    study_instance_uid: str
    state: str
    status: str | None
    priority: str | None
    flagged: tuple[str, ...]
    first_received: float
    last_received: float
    version: int


WORKLIST_ORDER = "(CASE WHEN priority = 'urgent' THEN 0 ELSE 1 END), first_received"
"""Must match the `studies_worklist` index expression, so SQLite pages without sorting."""


@dataclass(frozen=True)
class Claim:
    """A study taken for screening, with the instant that decides whether it went stale."""

    study_instance_uid: str
    claimed_at: float
    paths: tuple[Path, ...]


@dataclass(frozen=True)
class OutboxItem:
    id: int
    study_instance_uid: str
    path: Path
    destination: str
    attempts: int


class IntakeStore:
    """The intake database and instance folder under one storage root."""

    def __init__(self, root: str | Path, *, limits: ReadLimits | None = None) -> None:
        self.root = Path(root)
        self.instances_dir = self.root / "instances"
        self.results_dir = self.root / "results"
        self.incoming_dir = self.root / "incoming"
        for folder in (self.instances_dir, self.results_dir, self.incoming_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "intake.sqlite3"
        self.limits = limits or ReadLimits()
        self._local = threading.local()
        # executescript commits any open transaction itself, so it cannot run inside one;
        # every statement is idempotent (IF NOT EXISTS).
        self._connection().executescript(SCHEMA)

    # -- connections ----------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.db_path, timeout=30.0, isolation_level=None)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed transaction survives power loss, not only a process crash;
            # an acknowledgement is a promise.
            db.execute("PRAGMA synchronous=FULL")
            db.row_factory = sqlite3.Row
            self._local.db = db
        return db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        db = self._connection()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"intake database unavailable: {exc}") from exc
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        else:
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                db.execute("ROLLBACK")
                raise StoreError(f"intake database could not commit: {exc}") from exc

    def close(self) -> None:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- intake ---------------------------------------------------------------------------

    def receive(self, data: bytes, source: str) -> Received:
        """Validate, write and record one instance; return only once it is durable.

        Raises an `InputError` for data that is not a usable DICOM image (nothing is stored)
        and `StoreError` when it cannot be stored (the sender must retry).
        """
        info = read_info(data, self.limits)
        uids = info.uids
        name = f"{uuid.uuid4().hex}.dcm"
        partial = self.incoming_dir / (name + ".partial")
        try:
            _write_durably(partial, data)
        except OSError as exc:
            partial.unlink(missing_ok=True)
            raise StoreError(f"could not write the instance to storage: {exc}") from exc
        now = time.time()
        try:
            with self._transaction() as db:
                known = db.execute(
                    "SELECT 1 FROM instances WHERE sop_instance_uid = ?", (uids.sop_instance_uid,)
                ).fetchone()
                if known is not None:
                    partial.unlink(missing_ok=True)
                    return Received(
                        uids.sop_instance_uid, uids.study_instance_uid, True, uids.sop_class_uid
                    )
                os.replace(partial, self.instances_dir / name)
                _fsync_dir(self.instances_dir)  # the file exists before the row says so
                db.execute(
                    "INSERT INTO instances VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        uids.sop_instance_uid,
                        uids.study_instance_uid,
                        uids.series_instance_uid,
                        uids.sop_class_uid,
                        name,
                        len(data),
                        now,
                        source,
                    ),
                )
                db.execute(
                    """INSERT INTO studies
                       (study_instance_uid, state, first_received, last_received, instance_count)
                       VALUES (?, 'waiting', ?, ?, 1)
                       ON CONFLICT (study_instance_uid) DO UPDATE SET
                         last_received = excluded.last_received,
                         instance_count = instance_count + 1,
                         state = CASE WHEN state = 'done' THEN 'waiting' ELSE state END""",
                    (uids.study_instance_uid, now, now),
                )
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return Received(uids.sop_instance_uid, uids.study_instance_uid, False, uids.sop_class_uid)

    # -- screening queue ------------------------------------------------------------------

    def recover(self, stray_age_s: float = 3600.0) -> int:
        """After a crash: studies left mid-screening wait again; old partial files go.

        Only the process that runs the screening loop calls this. Partial files younger than
        `stray_age_s` may belong to an upload another process is still writing.
        """
        cutoff = time.time() - stray_age_s
        for stray in self.incoming_dir.glob("*.partial"):
            try:
                if stray.stat().st_mtime < cutoff:
                    stray.unlink(missing_ok=True)
            except FileNotFoundError:
                continue
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE studies SET state = 'waiting', claimed_at = NULL WHERE state = 'screening'"
            )
            return cursor.rowcount

    def claim_due(self, stable_s: float, limit: int = 8) -> list[Claim]:
        """Take up to `limit` studies that have been quiet for `stable_s` seconds."""
        now = time.time()
        with self._transaction() as db:
            rows = db.execute(
                """SELECT study_instance_uid FROM studies
                   WHERE state = 'waiting' AND last_received <= ?
                   ORDER BY last_received LIMIT ?""",
                (now - stable_s, limit),
            ).fetchall()
            claims = []
            for row in rows:
                study = row["study_instance_uid"]
                db.execute(
                    "UPDATE studies SET state = 'screening', claimed_at = ? "
                    "WHERE study_instance_uid = ?",
                    (now, study),
                )
                paths = tuple(
                    self.instances_dir / r["path"]
                    for r in db.execute(
                        "SELECT path FROM instances WHERE study_instance_uid = ? "
                        "ORDER BY received_at",
                        (study,),
                    )
                )
                claims.append(Claim(study, now, paths))
        return claims

    def claim_study(self, study_instance_uid: str) -> Claim | None:
        """Take one waiting study now, however recently it received an instance."""
        now = time.time()
        with self._transaction() as db:
            cursor = db.execute(
                "UPDATE studies SET state = 'screening', claimed_at = ? "
                "WHERE study_instance_uid = ? AND state = 'waiting'",
                (now, study_instance_uid),
            )
            if cursor.rowcount == 0:
                return None
            paths = tuple(
                self.instances_dir / r["path"]
                for r in db.execute(
                    "SELECT path FROM instances WHERE study_instance_uid = ? ORDER BY received_at",
                    (study_instance_uid,),
                )
            )
        return Claim(study_instance_uid, now, paths)

    def complete(
        self,
        claim: Claim,
        result: StudyResult,
        outputs: Sequence[Path],
        destinations: Sequence[str],
    ) -> int | None:
        """Record a result and queue its outputs for every destination, in one transaction.

        Returns the new version, or None when instances arrived during screening: then the
        study waits again and the stale result is dropped (the next one will cover them).
        """
        now = time.time()
        with self._transaction() as db:
            row = db.execute(
                "SELECT last_received, version, instance_count, state FROM studies "
                "WHERE study_instance_uid = ?",
                (claim.study_instance_uid,),
            ).fetchone()
            if row is None or row["state"] != "screening":
                return None
            if row["last_received"] > claim.claimed_at:
                db.execute(
                    "UPDATE studies SET state = 'waiting', claimed_at = NULL "
                    "WHERE study_instance_uid = ?",
                    (claim.study_instance_uid,),
                )
                return None
            version = int(row["version"]) + 1
            db.execute(
                "INSERT INTO results VALUES (?, ?, ?, ?, ?)",
                (claim.study_instance_uid, version, now, len(claim.paths), result.to_json()),
            )
            flagged = ",".join(f.code for f in result.flagged)
            db.execute(
                """UPDATE studies SET state = 'done', claimed_at = NULL, version = ?,
                   status = ?, priority = ?, flagged = ? WHERE study_instance_uid = ?""",
                (version, result.status, result.priority, flagged, claim.study_instance_uid),
            )
            for destination in destinations:
                for path in outputs:
                    db.execute(
                        """INSERT INTO outbox (study_instance_uid, version, path, destination,
                           state, next_attempt) VALUES (?, ?, ?, ?, 'pending', ?)""",
                        (claim.study_instance_uid, version, str(path), destination, now),
                    )
        return version

    def release(self, claim: Claim) -> None:
        """Give a claimed study back to the queue (shutdown before it was screened)."""
        with self._transaction() as db:
            db.execute(
                "UPDATE studies SET state = 'waiting', claimed_at = NULL "
                "WHERE study_instance_uid = ? AND state = 'screening'",
                (claim.study_instance_uid,),
            )

    # -- results --------------------------------------------------------------------------

    def latest_version(self, study_instance_uid: str) -> int:
        row = (
            self._connection()
            .execute(
                "SELECT version FROM studies WHERE study_instance_uid = ?", (study_instance_uid,)
            )
            .fetchone()
        )
        return int(row["version"]) if row is not None else 0

    def latest_result(self, study_instance_uid: str) -> tuple[int, StudyResult] | None:
        row = (
            self._connection()
            .execute(
                "SELECT version, result FROM results WHERE study_instance_uid = ? "
                "ORDER BY version DESC LIMIT 1",
                (study_instance_uid,),
            )
            .fetchone()
        )
        if row is None:
            return None
        return int(row["version"]), StudyResult.from_json(row["result"])

    def study_state(self, study_instance_uid: str) -> dict[str, object] | None:
        row = (
            self._connection()
            .execute("SELECT * FROM studies WHERE study_instance_uid = ?", (study_instance_uid,))
            .fetchone()
        )
        return dict(row) if row is not None else None

    def worklist(
        self,
        *,
        status: str | None = None,
        finding: str | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[int, list[WorklistRow]]:
        """One page of studies, urgent first, then longest waiting; and how many match in all.

        `status` is a result status (`analyzed`, `not_analyzed`, `failed`) or `pending` for
        studies without a result yet; `finding` keeps studies with that finding flagged.
        """
        where: list[str] = []
        params: list[object] = []
        if status == "pending":
            where.append("status IS NULL")
        elif status is not None:
            where.append("status = ?")
            params.append(status)
        if finding is not None:
            where.append("instr(',' || flagged || ',', ',' || ? || ',') > 0")
            params.append(finding)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        db = self._connection()
        total = int(db.execute(f"SELECT COUNT(*) FROM studies{clause}", params).fetchone()[0])
        rows = db.execute(
            "SELECT study_instance_uid, state, status, priority, flagged, first_received, "
            f"last_received, version FROM studies{clause} "
            f"ORDER BY {WORKLIST_ORDER} LIMIT ? OFFSET ?",
            [*params, limit, offset],
        ).fetchall()
        return total, [
            WorklistRow(
                study_instance_uid=r["study_instance_uid"],
                state=r["state"],
                status=r["status"],
                priority=r["priority"],
                flagged=tuple(c for c in (r["flagged"] or "").split(",") if c),
                first_received=float(r["first_received"]),
                last_received=float(r["last_received"]),
                version=int(r["version"]),
            )
            for r in rows
        ]

    def counts(self) -> dict[str, int]:
        """Queue and outbox depths, for metrics and readiness."""
        db = self._connection()
        out = {f"studies_{s}": 0 for s in ("waiting", "screening", "done")}
        for row in db.execute("SELECT state, COUNT(*) AS n FROM studies GROUP BY state"):
            out[f"studies_{row['state']}"] = int(row["n"])
        pending = db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()
        out["outbox_pending"] = int(pending[0])
        out["instances"] = int(db.execute("SELECT COUNT(*) FROM instances").fetchone()[0])
        return out

    # -- outbox ---------------------------------------------------------------------------

    def due_outbox(self, limit: int = 16) -> list[OutboxItem]:
        rows = (
            self._connection()
            .execute(
                "SELECT id, study_instance_uid, path, destination, attempts FROM outbox "
                "WHERE state = 'pending' AND next_attempt <= ? ORDER BY id LIMIT ?",
                (time.time(), limit),
            )
            .fetchall()
        )
        return [
            OutboxItem(
                int(r["id"]),
                r["study_instance_uid"],
                Path(r["path"]),
                r["destination"],
                r["attempts"],
            )
            for r in rows
        ]

    def mark_sent(self, item: OutboxItem) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET state = 'sent', sent_at = ?, attempts = attempts + 1 "
                "WHERE id = ?",
                (time.time(), item.id),
            )

    def mark_failed(self, item: OutboxItem, error: str, retry_in_s: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt = ? "
                "WHERE id = ?",
                (error[:500], time.time() + retry_in_s, item.id),
            )

    # -- audit ----------------------------------------------------------------------------

    def audit(self, actor: str, action: str, **detail: object) -> None:
        """Who did what: never patient names, IDs or birth dates, only our identifiers and UIDs."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO audit (at, actor, action, detail) VALUES (?, ?, ?, ?)",
                (time.time(), actor, action, json.dumps(detail, sort_keys=True, default=str)),
            )

    def audit_entries(self, action: str | None = None) -> list[dict[str, object]]:
        query = "SELECT at, actor, action, detail FROM audit"
        params: tuple[str, ...] = ()
        if action is not None:
            query += " WHERE action = ?"
            params = (action,)
        rows = self._connection().execute(query + " ORDER BY id", params).fetchall()
        return [{**dict(r), "detail": json.loads(r["detail"])} for r in rows]


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
