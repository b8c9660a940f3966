"""The SQLite backend: one database file in the storage folder, beside the instance files.

`SqliteStore` is `diagnostics.store.Store` for one storage root, assembled from one module per
table family; every SQL statement of the store lives in this package.
"""

from __future__ import annotations

from diagnostics.store.sqlite.connection import database_path, open_read_only
from diagnostics.store.sqlite.instances import Instances, content_digest
from diagnostics.store.sqlite.queue import Queue
from diagnostics.store.sqlite.results import Results
from diagnostics.store.sqlite.retention import Retention
from diagnostics.store.sqlite.sessions import RevokedSessions
from diagnostics.store.sqlite.snapshot import (
    SqliteSnapshot,
    exists,
    read_audit,
    read_snapshot,
    verify_audit,
)
from diagnostics.store.sqlite.transaction import SqliteTransaction
from diagnostics.store.sqlite.users import Users


class SqliteStore(Instances, Queue, Results, Retention, Users):
    """The store's tables in one SQLite database (WAL) under one storage root."""


__all__ = [
    "RevokedSessions",
    "SqliteSnapshot",
    "SqliteStore",
    "SqliteTransaction",
    "content_digest",
    "database_path",
    "exists",
    "open_read_only",
    "read_audit",
    "read_snapshot",
    "verify_audit",
]
