"""`PostgresStore`: the store's tables in PostgreSQL, shared by several service nodes.

The table families are the SQLite backend's own classes (`Instances`, `Queue`, `Results`,
`Retention`): their SQL runs through `PgDb`'s translation, and this base swaps in what differs:
connections from a pool, transactions on one pinned connection, claims that pass over rows
another node is claiming (`FOR UPDATE SKIP LOCKED`), intake serialised per study by an advisory
lock, and `NOTIFY` when work arrives (`wait_for_work` listens; it falls back to a plain wait).
The instance and output files stay in the storage folder, which every node must share.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import psycopg

from diagnostics.dicom.header import ReadLimits
from diagnostics.errors import StoreError
from diagnostics.store.interface import CLAIM_LEASE_S
from diagnostics.store.postgres import schema
from diagnostics.store.postgres.connection import CONNECT_TIMEOUT_S, PgDb, reason
from diagnostics.store.sql import Connection
from diagnostics.store.sqlite.connection import SqliteBase
from diagnostics.store.sqlite.instances import Instances
from diagnostics.store.sqlite.queue import Queue
from diagnostics.store.sqlite.results import Results
from diagnostics.store.sqlite.retention import Retention
from diagnostics.store.sqlite.users import Users

log = logging.getLogger(__name__)

CHANNEL = "diagnostics_work"
"""The LISTEN/NOTIFY channel intake announces new instances on."""

INTAKE_LOCK = 7_318_002
"""First key of intake's per-study advisory locks (the second is the study UID's hash)."""


class PgBase(SqliteBase):
    """Connections, transactions and the dialect's clauses for the table families."""

    SKIP_LOCKED = " FOR UPDATE SKIP LOCKED"
    FOR_UPDATE = " FOR UPDATE"

    def __init__(
        self,
        root: str | Path,
        url: str,
        *,
        limits: ReadLimits | None = None,
        lease_s: float = CLAIM_LEASE_S,
    ) -> None:
        self.url = url
        self.db = PgDb(url)
        self._listener: psycopg.Connection[Any] | None = None
        self._listen_lock = threading.Lock()
        super().__init__(root, limits=limits, lease_s=lease_s)

    def _create_schema(self) -> None:
        try:
            applied = schema.migrate(self.db)
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot migrate the database at {self.db.where}: {reason(exc)}"
            ) from exc
        if applied:
            log.info("database %s: schema migrations %s applied", self.db.where, applied)

    def _connection(self) -> Connection:
        return self.db

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        db = self.db
        try:
            db.execute("BEGIN")
        except psycopg.Error as exc:
            raise StoreError(f"database {db.where} unavailable: {reason(exc)}") from exc
        try:
            yield db
        except psycopg.Error as exc:
            _rollback(db)
            raise StoreError(f"database {db.where} could not record it: {reason(exc)}") from exc
        except BaseException:
            _rollback(db)
            raise
        else:
            try:
                db.execute("COMMIT")
            except psycopg.Error as exc:
                _rollback(db)
                raise StoreError(f"database {db.where} could not commit: {reason(exc)}") from exc

    def _serialize(self, db: Connection, key: str) -> None:
        db.execute("SELECT pg_advisory_xact_lock(?, hashtext(?))", (INTAKE_LOCK, key))

    def _announce(self, db: Connection) -> None:
        db.execute(f"NOTIFY {CHANNEL}")  # delivered when (and only if) the transaction commits

    def wait_for_work(self, timeout_s: float) -> bool:
        """Block until intake announces an instance, or `timeout_s` passes (True: waited)."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        with self._listen_lock:
            try:
                if self._listener is None or self._listener.closed:
                    self._listener = psycopg.connect(
                        self.url, autocommit=True, connect_timeout=int(CONNECT_TIMEOUT_S)
                    )
                    self._listener.execute(f"LISTEN {CHANNEL}")
                for _ in self._listener.notifies(timeout=max(timeout_s, 0.0), stop_after=1):
                    break
                return True
            except psycopg.Error as exc:
                log.warning("database %s: LISTEN failed (%s); polling", self.db.where, reason(exc))
                self._close_listener()
        time.sleep(max(deadline - time.monotonic(), 0.0))
        return True

    def _close_listener(self) -> None:
        if self._listener is not None:
            with suppress(psycopg.Error):
                self._listener.close()
            self._listener = None

    def close(self) -> None:
        with self._listen_lock:
            self._close_listener()
        self.db.close()


class PostgresStore(PgBase, Instances, Queue, Results, Retention, Users):
    """The store's tables in PostgreSQL, the instance files under one (shared) storage root."""


def _rollback(db: PgDb) -> None:
    if not db.in_transaction:
        return
    try:
        db.execute("ROLLBACK")
    except psycopg.Error:
        log.warning("database: rollback failed (the transaction is dropped anyway)")
