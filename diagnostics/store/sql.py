"""What the store's SQL modules need of a database connection, whichever engine holds it.

The table modules in `diagnostics.store.sqlite` are written against these two protocols, not
against `sqlite3` itself: an `sqlite3.Connection` satisfies them as it is, and the PostgreSQL
backend (`diagnostics.store.postgres`) passes an adapter that translates the few SQLite-isms
(`?` placeholders, `:name` parameters, `instr`) on the way. So every statement is written once.
A row reads by position and by column name (`sqlite3.Row` does, and so does the adapter's).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

Row = Any
"""A result row: `row[0]`, `row["column"]`, `dict(row)` and `tuple(row)` all work."""


class Cursor(Protocol):
    @property
    def rowcount(self) -> int: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> list[Any]: ...

    def __iter__(self) -> Iterator[Any]: ...


class Connection(Protocol):
    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Any = (), /) -> Cursor: ...


POSTGRESQL = "postgresql"
SQLITE = "sqlite"


def dialect(db: object) -> str:
    """`postgresql` for the PostgreSQL adapter, `sqlite` for a plain `sqlite3` connection: for
    the few steps that differ (the audit chain's id sequence, row locks)."""
    return str(getattr(db, "dialect", SQLITE))
