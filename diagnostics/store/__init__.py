"""The store: every table of the service's database and the instance files beside it.

Callers use the `Store`, `Transaction` and `Snapshot` interfaces (`interface.py`) and the plain
records (`records.py`); `open_store` and `read_snapshot` pick the backend. Only SQLite exists
(`diagnostics.store.sqlite`, where all SQL lives); a second backend plugs in here.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from diagnostics.dicom.header import ReadLimits
from diagnostics.store.audit import AuditEntry, AuditFilter, ChainReport
from diagnostics.store.interface import CLAIM_LEASE_S, Snapshot, Store, Transaction, UserStore
from diagnostics.store.sqlite import SqliteStore
from diagnostics.store.sqlite import exists as _sqlite_exists
from diagnostics.store.sqlite import read_audit as _sqlite_read_audit
from diagnostics.store.sqlite import read_snapshot as _sqlite_snapshot
from diagnostics.store.sqlite import verify_audit as _sqlite_verify_audit
from diagnostics.store.sqlite.backup import (
    DATABASES,
    References,
    check_database,
    copy_database,
    describe,
    references,
    relocate_outputs,
)
from diagnostics.store.sqlite.sessions import DB_FILE, RevokedSessions


def open_store(
    root: str | Path, *, limits: ReadLimits | None = None, lease_s: float = CLAIM_LEASE_S
) -> Store:
    """The store under a storage root, created if missing."""
    return SqliteStore(root, limits=limits, lease_s=lease_s)


def open_users(root: str | Path) -> UserStore:
    """The named users and API tokens of a storage root (the same database as the store)."""
    return SqliteStore(root)


def store_exists(storage: Path) -> bool:
    """Whether a storage folder holds a store (exports refuse an empty folder)."""
    return _sqlite_exists(storage)


def revoked_sessions(storage: Path) -> RevokedSessions:
    """The storage folder's list of signed-out UI sessions (a database of its own)."""
    return RevokedSessions(storage / DB_FILE)


def read_audit(
    storage: Path, where: AuditFilter, limit: int | None = None
) -> tuple[int, list[AuditEntry]]:
    """The audit rows matching `where`, oldest first, read without ever writing the store."""
    return _sqlite_read_audit(storage, where, limit)


def verify_audit(storage: Path) -> ChainReport:
    """Walk the audit trail's hash chain on a read-only connection (the service may run)."""
    return _sqlite_verify_audit(storage)


@contextmanager
def read_snapshot(storage: Path) -> Iterator[Snapshot]:
    """One consistent read-only view of the store under `storage`."""
    with _sqlite_snapshot(storage) as snapshot:
        yield snapshot


__all__ = [
    "CLAIM_LEASE_S",
    "DATABASES",
    "AuditEntry",
    "AuditFilter",
    "ChainReport",
    "References",
    "RevokedSessions",
    "Snapshot",
    "Store",
    "Transaction",
    "UserStore",
    "check_database",
    "copy_database",
    "describe",
    "open_store",
    "open_users",
    "read_audit",
    "read_snapshot",
    "references",
    "relocate_outputs",
    "revoked_sessions",
    "store_exists",
    "verify_audit",
]
