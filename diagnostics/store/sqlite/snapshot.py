"""One consistent, read-only view of an SQLite store, for the exports that must never write it.

One read transaction on a read-only connection: WAL gives it a stable snapshot while the
service goes on writing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from diagnostics.errors import StoreError
from diagnostics.store.audit import AuditEntry, AuditFilter, ChainReport
from diagnostics.store.records import MonitoredResult, StoredInstance
from diagnostics.store.sql import Connection
from diagnostics.store.sqlite import audit
from diagnostics.store.sqlite.connection import database_path, open_read_only
from diagnostics.store.sqlite.monitoring import monitored_results


def exists(storage: Path) -> bool:
    """Whether a storage folder holds a store's database."""
    return database_path(storage).is_file()


class SqliteSnapshot:
    """Reads inside `read_snapshot`'s transaction."""

    def __init__(self, db: Connection, storage: Path) -> None:
        self.db = db
        self.instances_dir = storage / "instances"

    def instances(self) -> list[StoredInstance]:
        """Every stored instance, by study and then in arrival order."""
        rows = self.db.execute(
            "SELECT sop_instance_uid, study_instance_uid, sop_class_uid, path FROM instances "
            "ORDER BY study_instance_uid, received_at, sop_instance_uid"
        ).fetchall()
        return [
            StoredInstance(
                r["sop_instance_uid"],
                r["study_instance_uid"],
                r["sop_class_uid"],
                self.instances_dir / r["path"],
            )
            for r in rows
        ]

    def instances_of(self, study_instance_uid: str) -> list[tuple[str, Path]]:
        """(SOP Instance UID, file) of each stored instance of a study."""
        return [
            (r["sop_instance_uid"], self.instances_dir / r["path"])
            for r in self.db.execute(
                "SELECT sop_instance_uid, path FROM instances WHERE study_instance_uid = ?",
                (study_instance_uid,),
            )
        ]

    def latest_results(self) -> list[tuple[str, str]]:
        """(study, result JSON) of each study's newest result; parsed by the caller, which
        decides what an unreadable (older) result means."""
        rows = self.db.execute(
            "SELECT r.study_instance_uid, r.result FROM results r JOIN "
            "(SELECT study_instance_uid, MAX(version) AS v FROM results GROUP BY "
            "study_instance_uid) m ON r.study_instance_uid = m.study_instance_uid "
            "AND r.version = m.v"
        ).fetchall()
        return [(r["study_instance_uid"], r["result"]) for r in rows]

    def results_of(self, study_instance_uid: str) -> list[tuple[int, str]]:
        """(version, result JSON) of every result of a study."""
        return [
            (int(r["version"]), r["result"])
            for r in self.db.execute(
                "SELECT version, result FROM results WHERE study_instance_uid = ?",
                (study_instance_uid,),
            )
        ]

    def monitored_results(self, since: float) -> list[MonitoredResult]:
        """Each study's current result recorded since `since`, for `diagnostics monitor`."""
        return monitored_results(self.db, since)

    def feedback_rows(self) -> list[dict[str, object]] | None:
        """Every feedback row as stored, oldest first; None for a store without the table."""
        has = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'feedback'"
        ).fetchone()
        if not has:
            return None
        return [dict(r) for r in self.db.execute("SELECT * FROM feedback ORDER BY id")]


@contextmanager
def read_snapshot(storage: Path) -> Iterator[SqliteSnapshot]:
    """A snapshot of the store under `storage`; database errors become `StoreError`."""
    db = open_read_only(storage)
    try:
        db.execute("BEGIN")
        yield SqliteSnapshot(db, storage)
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        raise StoreError(f"cannot read the intake database: {exc}") from exc
    finally:
        db.close()


def read_audit(
    storage: Path, where: AuditFilter, limit: int | None = None
) -> tuple[int, list[AuditEntry]]:
    """Audit rows in one read transaction on a read-only connection (WAL: the service writes on)."""
    with read_snapshot(storage) as snapshot:
        try:
            return audit.query(snapshot.db, where, limit)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the audit trail: {exc}") from exc


def verify_audit(storage: Path) -> ChainReport:
    """Verify the chain as of one snapshot: rows the service appends meanwhile wait for the next."""
    with read_snapshot(storage) as snapshot:
        try:
            return audit.verify(snapshot.db)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot read the audit trail: {exc}") from exc
