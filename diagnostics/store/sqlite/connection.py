"""The SQLite store's storage root and connections: one database in WAL mode per storage folder.

Several processes may read and write it (the HTTP workers and the DICOM listener); each thread
has its own connection, and every write is one `BEGIN IMMEDIATE` transaction whose database
errors become `StoreError`.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

from diagnostics.constants import DATABASE_FILE
from diagnostics.dicom.header import ReadLimits
from diagnostics.errors import StoreError
from diagnostics.store.audit import AuditEntry, AuditFilter, ChainReport
from diagnostics.store.interface import CLAIM_LEASE_S
from diagnostics.store.sql import Connection
from diagnostics.store.sqlite import audit, schema
from diagnostics.store.sqlite.transaction import SqliteTransaction

log = logging.getLogger(__name__)


def database_path(storage: Path) -> Path:
    """Where a storage folder's database is: the one place the file name is joined."""
    return storage / DATABASE_FILE


def open_read_only(storage: Path) -> sqlite3.Connection:
    """A read-only connection to a store's database, for exports that must never write it."""
    db_path = database_path(storage)
    try:
        db = sqlite3.connect(db_path.resolve().as_uri() + "?mode=ro", uri=True, timeout=30.0)
    except sqlite3.Error as exc:
        raise StoreError(f"cannot open the intake database: {exc}") from exc
    db.row_factory = sqlite3.Row
    return db


class SqliteBase:
    """The storage root, its folders and this thread's connection; the table families
    (`instances.py`, `queue.py`, `results.py`) build on it."""

    def __init__(
        self,
        root: str | Path,
        *,
        limits: ReadLimits | None = None,
        lease_s: float = CLAIM_LEASE_S,
    ) -> None:
        self.root = Path(root)
        self.lease_s = lease_s
        self.instances_dir = self.root / "instances"
        self.results_dir = self.root / "results"
        self.incoming_dir = self.root / "incoming"
        for folder in (self.instances_dir, self.results_dir, self.incoming_dir):
            folder.mkdir(parents=True, exist_ok=True)
        self.db_path = database_path(self.root)
        self.limits = limits or ReadLimits()
        self._local = threading.local()
        self._create_schema()

    def _create_schema(self) -> None:
        schema.create(self._sqlite())

    SKIP_LOCKED = ""
    """Ends a claim's SELECT: PostgreSQL passes over rows another node is claiming
    (`FOR UPDATE SKIP LOCKED`); SQLite's single writer (`BEGIN IMMEDIATE`) needs nothing."""
    FOR_UPDATE = ""
    """Ends a SELECT whose row the transaction goes on to change (PostgreSQL: `FOR UPDATE`)."""

    def _serialize(self, db: Connection, key: str) -> None:
        """Hold off other writers of `key` (a study) until this transaction ends: SQLite's
        `BEGIN IMMEDIATE` already admits one writer at a time."""

    def _announce(self, db: Connection) -> None:
        """Wake idle workers when this transaction commits: nothing to do for SQLite, whose
        workers poll."""

    def wait_for_work(self, timeout_s: float) -> bool:
        """Block until intake announces work or `timeout_s` passes; False at once where
        nothing announces it (SQLite: the caller polls)."""
        return False

    def _connection(self) -> Connection:
        return self._sqlite()

    def _sqlite(self) -> sqlite3.Connection:
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
    def _transaction(self) -> Iterator[Connection]:
        db = self._sqlite()
        try:
            db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise StoreError(f"intake database unavailable: {exc}") from exc
        try:
            yield db
        except sqlite3.Error as exc:  # a read-only, full or damaged database mid-transaction
            _rollback(db)
            raise StoreError(f"intake database could not record it: {exc}") from exc
        except BaseException:
            _rollback(db)
            raise
        else:
            try:
                db.execute("COMMIT")
            except sqlite3.Error as exc:
                _rollback(db)
                raise StoreError(f"intake database could not commit: {exc}") from exc

    @contextmanager
    def _steps(self) -> Iterator[SqliteTransaction]:
        with self._transaction() as db:
            yield SqliteTransaction(db)

    def transaction(self) -> AbstractContextManager[SqliteTransaction]:
        """One write transaction whose steps commit together (`Store.transaction`)."""
        return self._steps()

    def view(self) -> SqliteTransaction:
        """The same steps as plain reads on this thread's connection, outside a transaction."""
        return SqliteTransaction(self._connection())

    def sql_transaction(self) -> AbstractContextManager[Connection]:
        """One raw write transaction, for tests and maintenance (SQL in this package's
        dialect: the PostgreSQL backend translates it)."""
        return self._transaction()

    def connection(self) -> Connection:
        """This thread's raw connection, for tests and maintenance."""
        return self._connection()

    def close(self) -> None:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    # -- audit ----------------------------------------------------------------------------

    def audit(self, actor: str, action: str, **detail: object) -> None:
        """Who did what: never patient names, IDs or birth dates, only our identifiers and UIDs."""
        with self._steps() as tx:
            tx.audit(actor, action, **detail)

    def audit_entries(self, action: str | None = None) -> list[dict[str, object]]:
        """Every row (of one action), oldest first, as callers knew them before the ATNA
        columns: `detail` with `study`, `sop` and `address` back in it."""
        _, rows = audit.query(self._connection(), AuditFilter(event=action))
        return [row.legacy_dict() for row in rows]

    def audit_page(
        self, where: AuditFilter, limit: int, offset: int = 0
    ) -> tuple[int, list[AuditEntry]]:
        """(how many rows match, newest first from `offset`): the admin page's reads."""
        return audit.query(self._connection(), where, limit, offset, newest_first=True)

    def verify_audit(self) -> ChainReport:
        return audit.verify(self._connection())


def _rollback(db: sqlite3.Connection) -> None:
    try:
        db.execute("ROLLBACK")
    except sqlite3.Error:
        log.warning("intake database: rollback failed (the transaction is dropped anyway)")
