"""The store: every table of the service's database and the instance files beside it.

Callers use the `Store`, `Transaction` and `Snapshot` interfaces (`interface.py`) and the plain
records (`records.py`); `open_store` and `read_snapshot` pick the backend from the database
URL (`--database`): SQLite in the storage folder (`diagnostics.store.sqlite`, where all SQL
lives, the default) or PostgreSQL (`diagnostics.store.postgres`, the same SQL through a thin
dialect layer), shared by several nodes.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from diagnostics.constants import DATABASE_FILE
from diagnostics.dicom.header import ReadLimits
from diagnostics.errors import ConfigurationError
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

POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def postgres_url(database: str | None, storage: Path) -> str | None:
    """The PostgreSQL URL of a `--database` value, or None for the storage folder's SQLite.

    `sqlite:///PATH` must name the storage folder's own database (or the folder): the exports,
    backups and the lead lock all find it there. Anything else is refused by name."""
    if not database or database in ("sqlite:", "sqlite://"):
        return None
    if database.startswith(POSTGRES_SCHEMES):
        return database
    if database.startswith("sqlite:///"):
        named = Path(database.removeprefix("sqlite://"))
        own = (storage / DATABASE_FILE).resolve()
        if named.resolve() in (own, storage.resolve()):
            return None
        raise ConfigurationError(
            f"--database {database}: an SQLite store lives in its storage folder "
            f"(sqlite://{own}); point --storage there instead"
        )
    scheme = database.split(":", 1)[0] if ":" in database else database[:20]
    raise ConfigurationError(
        f"--database: {scheme!r} is not a database URL (sqlite:///PATH or postgresql://...)"
    )


def open_store(
    root: str | Path,
    *,
    limits: ReadLimits | None = None,
    lease_s: float = CLAIM_LEASE_S,
    database: str | None = None,
) -> Store:
    """The store under a storage root (in `database` when that is PostgreSQL), created or
    migrated if needed."""
    url = postgres_url(database, Path(root))
    if url is not None:
        from diagnostics.store import postgres

        return postgres.PostgresStore(root, url, limits=limits, lease_s=lease_s)
    return SqliteStore(root, limits=limits, lease_s=lease_s)


def open_users(root: str | Path, database: str | None = None) -> UserStore:
    """The named users and API tokens, in the store's own database: with PostgreSQL every node
    sees the same users and tokens (a revoked token is refused on all of them)."""
    url = postgres_url(database, Path(root))
    if url is not None:
        from diagnostics.store import postgres

        return postgres.PostgresStore(root, url)
    return SqliteStore(root)


def store_exists(storage: Path, database: str | None = None) -> bool:
    """Whether a storage folder (or its database) holds a store (exports refuse an empty one)."""
    url = postgres_url(database, storage)
    if url is not None:
        from diagnostics.store import postgres

        return postgres.exists(url)
    return _sqlite_exists(storage)


def revoked_sessions(storage: Path, database: str | None = None) -> RevokedSessions:
    """The list of signed-out UI sessions: a database of its own in the storage folder, or a
    table of the shared PostgreSQL database."""
    url = postgres_url(database, storage)
    if url is not None:
        from diagnostics.store import postgres

        return postgres.PgRevokedSessions(url)
    return RevokedSessions(storage / DB_FILE)


def read_audit(
    storage: Path, where: AuditFilter, limit: int | None = None, database: str | None = None
) -> tuple[int, list[AuditEntry]]:
    """The audit rows matching `where`, oldest first, read without ever writing the store."""
    url = postgres_url(database, storage)
    if url is not None:
        from diagnostics.store import postgres

        return postgres.read_audit(url, storage, where, limit)
    return _sqlite_read_audit(storage, where, limit)


def verify_audit(storage: Path, database: str | None = None) -> ChainReport:
    """Walk the audit trail's hash chain in one read-only snapshot (the service may run)."""
    url = postgres_url(database, storage)
    if url is not None:
        from diagnostics.store import postgres

        return postgres.verify_audit(url, storage)
    return _sqlite_verify_audit(storage)


@contextmanager
def read_snapshot(storage: Path, database: str | None = None) -> Iterator[Snapshot]:
    """One consistent read-only view of the store under `storage` (or in `database`)."""
    url = postgres_url(database, storage)
    if url is not None:
        from diagnostics.store import postgres

        with postgres.read_snapshot(url, storage) as pg:
            yield pg
        return
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
    "postgres_url",
    "read_audit",
    "read_snapshot",
    "references",
    "relocate_outputs",
    "revoked_sessions",
    "store_exists",
    "verify_audit",
]
