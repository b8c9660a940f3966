"""The SQL half of backup and restore: online copies of the databases, what they refer to.

SQLite's online backup API copies a database page by page inside one read transaction, so the
copy is one consistent state even while the service writes (WAL: the reader never blocks the
writers). The copy is turned into a single self-contained file (rollback journal, no `-wal`)
so that its digest in the backup's manifest stays true; the service turns WAL on again when it
opens a restored store. The files the copy refers to (instances, outputs queued in the outbox)
are read from the copy, never from the live database, so each belongs to the same snapshot.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from diagnostics.constants import DATABASE_FILE
from diagnostics.errors import BackupError
from diagnostics.store.sqlite.sessions import DB_FILE as SESSIONS_FILE

DATABASES = (DATABASE_FILE, SESSIONS_FILE)
"""Every database of a storage folder, the store's own first; each is copied on its own."""


@dataclass(frozen=True)
class References:
    """The files one database copy needs: instance paths (relative to `instances/`) and the
    outbox's output paths exactly as recorded (absolute paths inside the storage folder)."""

    instances: tuple[str, ...]
    outputs: tuple[str, ...]


def copy_database(source: Path, target: Path) -> None:
    """One consistent copy of the database `source` at `target` (a new file), checked."""
    if not source.is_file():
        raise BackupError(f"{source.name}: no such database in the storage folder")
    try:
        # A plain connection, not mode=ro: a read-only one cannot read a WAL database whose
        # -shm file is gone (a cleanly stopped service). It writes nothing here.
        src = sqlite3.connect(source, timeout=30.0)
        try:
            dst = sqlite3.connect(target)
            try:
                src.backup(dst)  # all pages in one step: one read transaction, one snapshot
                dst.execute("PRAGMA journal_mode=DELETE")
                _check(dst, target.name)
            finally:
                dst.close()
        finally:
            src.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{source.name}: the online backup failed: {exc}") from exc


def check_database(path: Path) -> None:
    """Raises `BackupError` naming the file when SQLite finds it damaged."""
    try:
        db = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            _check(db, path.name)
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{path.name}: not a usable database: {exc}") from exc


def _check(db: sqlite3.Connection, name: str) -> None:
    verdict = db.execute("PRAGMA quick_check").fetchone()[0]
    if verdict != "ok":
        raise BackupError(f"{name}: the database copy is damaged ({verdict})")


def references(database: Path) -> References:
    """The files a copy of the store's database refers to."""
    try:
        db = sqlite3.connect(database.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            instances = [r[0] for r in db.execute("SELECT path FROM instances ORDER BY path")]
            outputs = [r[0] for r in db.execute("SELECT DISTINCT path FROM outbox ORDER BY path")]
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{database.name}: cannot read the copy: {exc}") from exc
    return References(tuple(instances), tuple(outputs))


def describe(database: Path) -> dict[str, dict[str, object]]:
    """Each table's columns and row count: the schema a backup was taken with, and what a
    restore can be compared against."""
    try:
        db = sqlite3.connect(database.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            tables = [
                r[0]
                for r in db.execute(
                    "SELECT name FROM sqlite_master WHERE type = 'table' "
                    "AND name NOT LIKE 'sqlite_%' ORDER BY name"
                )
            ]
            out: dict[str, dict[str, object]] = {}
            for table in tables:
                quoted = '"' + table.replace('"', '""') + '"'
                columns = [r[1] for r in db.execute(f"PRAGMA table_info({quoted})")]
                rows = db.execute(f"SELECT COUNT(*) FROM {quoted}").fetchone()[0]
                out[table] = {"columns": columns, "rows": int(rows)}
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{database.name}: cannot read the copy: {exc}") from exc
    return out


def relocate_outputs(database: Path, moved: Mapping[str, str]) -> int:
    """Point outbox rows at the restored copies of their files (`moved`: recorded path → new
    path); returns how many rows changed. Runs on the restored copy before it is published."""
    try:
        db = sqlite3.connect(database, isolation_level=None)
        try:
            db.execute("BEGIN IMMEDIATE")
            changed = 0
            for old, new in moved.items():
                changed += db.execute(
                    "UPDATE outbox SET path = ? WHERE path = ?", (new, old)
                ).rowcount
            db.execute("COMMIT")
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise BackupError(f"{database.name}: cannot update the restored outbox: {exc}") from exc
    return changed
