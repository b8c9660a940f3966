"""The PostgreSQL backend: one database shared by several service nodes (`--database URL`).

`PostgresStore` is `diagnostics.store.Store` over the SQLite backend's table families, whose SQL
runs through a thin dialect layer (`connection.py`); the schema is versioned migrations
(`schema.py`). The exports read one consistent snapshot (`read_snapshot`: a read-only
repeatable-read transaction), as they do from SQLite's WAL.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg

from diagnostics.errors import StoreError
from diagnostics.store.audit import AuditEntry, AuditFilter, ChainReport
from diagnostics.store.postgres.connection import PgDb, describe, reason
from diagnostics.store.postgres.store import PostgresStore
from diagnostics.store.sqlite import audit
from diagnostics.store.sqlite.sessions import RevokedSessions, session_digest
from diagnostics.store.sqlite.snapshot import SqliteSnapshot


class PostgresSnapshot(SqliteSnapshot):
    """Reads inside `read_snapshot`'s transaction (the SQL is the SQLite snapshot's)."""

    def feedback_rows(self) -> list[dict[str, object]] | None:
        return [dict(r) for r in self.db.execute("SELECT * FROM feedback ORDER BY id")]


def exists(url: str) -> bool:
    """Whether the database holds a store (its schema is migrated)."""
    db = PgDb(url, max_size=1)
    try:
        rows = db.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchall()
        return bool(rows[0][0])
    except psycopg.Error as exc:
        raise StoreError(f"cannot read the database at {describe(url)}: {reason(exc)}") from exc
    finally:
        db.close()


@contextmanager
def read_snapshot(url: str, storage: Path) -> Iterator[PostgresSnapshot]:
    """One consistent read-only view of the database (and the instance files under `storage`)."""
    db = PgDb(url, max_size=1)
    try:
        db.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        try:
            yield PostgresSnapshot(db, storage)
        finally:
            db.execute("ROLLBACK")  # read only: nothing to commit
    except psycopg.Error as exc:
        raise StoreError(f"cannot read the database at {db.where}: {reason(exc)}") from exc
    finally:
        db.close()


def read_audit(
    url: str, storage: Path, where: AuditFilter, limit: int | None = None
) -> tuple[int, list[AuditEntry]]:
    with read_snapshot(url, storage) as snapshot:
        try:
            return audit.query(snapshot.db, where, limit)
        except psycopg.Error as exc:
            raise StoreError(f"cannot read the audit trail: {reason(exc)}") from exc


def verify_audit(url: str, storage: Path) -> ChainReport:
    """Verify the chain as of one snapshot: rows other nodes append meanwhile wait for the next."""
    with read_snapshot(url, storage) as snapshot:
        try:
            return audit.verify(snapshot.db)
        except psycopg.Error as exc:
            raise StoreError(f"cannot read the audit trail: {reason(exc)}") from exc


class PgRevokedSessions(RevokedSessions):
    """The signed-out session list in the shared database, so every node refuses the cookie."""

    def __init__(self, url: str) -> None:  # no file: the table is in the schema
        self.db = PgDb(url, max_size=2)
        self.path = Path(describe(url))

    def revoke(self, session_id: str, expires: float, now: float | None = None) -> None:
        now = time.time() if now is None else now
        try:
            self.db.execute("BEGIN")
            try:
                self.db.execute("DELETE FROM revoked_sessions WHERE expires <= ?", (now,))
                self.db.execute(
                    "INSERT INTO revoked_sessions (digest, expires) VALUES (?, ?) "
                    "ON CONFLICT (digest) DO UPDATE SET expires = excluded.expires",
                    (session_digest(session_id), expires),
                )
                self.db.execute("COMMIT")
            finally:
                if self.db.in_transaction:
                    self.db.execute("ROLLBACK")
        except psycopg.Error as exc:
            raise StoreError(
                f"the signed-out session list cannot be written: {reason(exc)}"
            ) from exc

    def is_revoked(self, session_id: str) -> bool:
        try:
            row = self.db.execute(
                "SELECT 1 FROM revoked_sessions WHERE digest = ?", (session_digest(session_id),)
            ).fetchone()
        except psycopg.Error as exc:
            raise StoreError(f"the signed-out session list cannot be read: {reason(exc)}") from exc
        return row is not None


__all__ = [
    "PgDb",
    "PgRevokedSessions",
    "PostgresSnapshot",
    "PostgresStore",
    "exists",
    "read_audit",
    "read_snapshot",
    "verify_audit",
]
