"""PostgreSQL connections that speak the store's SQL: a pool, and the dialect on the way in.

The table modules (`diagnostics.store.sqlite.*`) write SQLite's SQL once; `translate` turns the
few SQLite-isms they use into PostgreSQL's (`?` and `:name` placeholders, `instr`), and the
statements that differ in substance (claims, row locks, the audit chain's lock row) ask the
backend for its clause instead (`SKIP_LOCKED`, `FOR_UPDATE`, `diagnostics.store.sql.dialect`).

`PgDb` is what the table modules see: outside a transaction each statement borrows a pooled
connection and returns it at once (autocommit); `BEGIN` pins one connection to the calling
thread until `COMMIT` or `ROLLBACK`, so a transaction's steps run on one connection. Results are
read in full before the connection goes back, so a cursor never outlives its connection.
A plain statement that cannot reach the database (down, unreachable, the pool exhausted) raises
`StoreError`, as a transaction does, so callers answer "try again" (503) rather than crash.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg_pool import ConnectionPool

from diagnostics.errors import StoreError
from diagnostics.store.sql import POSTGRESQL

POOL_MAX = 16
"""Connections one process keeps at most: HTTP request threads, the workers, the listener."""

CONNECT_TIMEOUT_S = 10.0

RECONNECT_S = 10.0
"""How long the pool retries a lost connection (with backoff) before giving that attempt up, so
the next request starts a fresh one: bounds how long a node refuses after the database is back
(the pool's default, 5 minutes of doubling waits, could leave it refusing for minutes)."""

_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_INSTR = re.compile(r"\binstr\(", re.IGNORECASE)
_CONTROL = re.compile(r"\s*(BEGIN|COMMIT|ROLLBACK)\b", re.IGNORECASE)
_IMMEDIATE = re.compile(r"\s*BEGIN\s+IMMEDIATE\s*", re.IGNORECASE)


def translate(sql: str, parameters: object) -> str:
    """SQLite's statement as PostgreSQL's (psycopg placeholders, `strpos` for `instr`)."""
    sql = _INSTR.sub("strpos(", sql)
    if not parameters:
        return sql
    sql = sql.replace("%", "%%")
    if isinstance(parameters, Mapping):
        return _NAMED.sub(r"%(\1)s", sql)
    return sql.replace("?", "%s")


def describe(url: str) -> str:
    """A database URL without its password, for messages and logs."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    port = f":{parts.port}" if parts.port else ""
    return f"postgresql://{host}{port}{parts.path}"


class PgRow:
    """One row: by position, by column name, `dict(row)` and `tuple(row)` (as `sqlite3.Row`)."""

    __slots__ = ("_names", "_values")

    def __init__(self, names: dict[str, int], values: Sequence[Any]) -> None:
        self._names = names
        self._values = tuple(values)

    def __getitem__(self, key: int | str) -> Any:
        if isinstance(key, str):
            return self._values[self._names[key]]
        return self._values[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def keys(self) -> list[str]:
        return list(self._names)


class Rows:
    """A statement's result, read in full (`diagnostics.store.sql.Cursor`)."""

    def __init__(self, rows: list[PgRow], rowcount: int) -> None:
        self._rows = rows
        self._rowcount = rowcount

    @property
    def rowcount(self) -> int:
        return self._rowcount

    def fetchone(self) -> PgRow | None:
        return self._rows.pop(0) if self._rows else None

    def fetchall(self) -> list[PgRow]:
        rows, self._rows = self._rows, []
        return rows

    def __iter__(self) -> Iterator[PgRow]:
        return iter(self.fetchall())


def run(conn: psycopg.Connection[Any], sql: str, parameters: Any = ()) -> Rows:
    """One statement on one connection, its rows read in full."""
    if _IMMEDIATE.fullmatch(sql):  # SQLite's writer lock: PostgreSQL locks rows instead
        sql = "BEGIN"
    cursor = conn.execute(translate(sql, parameters), parameters or None)
    if cursor.description is None:
        return Rows([], cursor.rowcount)
    names = {column.name: i for i, column in enumerate(cursor.description)}
    return Rows([PgRow(names, values) for values in cursor.fetchall()], cursor.rowcount)


class PgDb:
    """The store's connection to PostgreSQL (`diagnostics.store.sql.Connection`), see above."""

    dialect = POSTGRESQL

    def __init__(self, url: str, *, max_size: int = POOL_MAX) -> None:
        self.where = describe(url)
        self.pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url,
            min_size=1,
            max_size=max_size,
            kwargs={"autocommit": True, "connect_timeout": int(CONNECT_TIMEOUT_S)},
            # A connection left broken by a database restart is replaced, never handed out.
            check=ConnectionPool.check_connection,
            reconnect_timeout=RECONNECT_S,
            open=False,
            name="diagnostics-store",
        )
        try:
            self.pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except psycopg.Error as exc:
            self.pool.close()
            raise StoreError(
                f"cannot connect to the database at {self.where}: {reason(exc)}"
            ) from exc
        self._local = threading.local()

    @property
    def in_transaction(self) -> bool:
        return getattr(self._local, "conn", None) is not None

    def execute(self, sql: str, parameters: Any = (), /) -> Rows:
        pinned: psycopg.Connection[Any] | None = getattr(self._local, "conn", None)
        control = _CONTROL.match(sql)
        word = control.group(1).upper() if control else ""
        if word == "BEGIN":
            if pinned is not None:
                raise StoreError("a store transaction is already open on this thread")
            conn = self.pool.getconn(timeout=CONNECT_TIMEOUT_S)
            self._local.conn = conn
            try:
                return run(conn, sql)
            except BaseException:
                self._unpin()
                raise
        if pinned is not None:
            if word in ("COMMIT", "ROLLBACK"):
                try:
                    return run(pinned, word)
                finally:
                    self._unpin()
            return run(pinned, sql, parameters)
        try:
            with self.pool.connection(timeout=CONNECT_TIMEOUT_S) as conn:
                return run(conn, sql, parameters)
        except psycopg.OperationalError as exc:  # down or unreachable: retryable, so a 503
            raise StoreError(f"database {self.where} unavailable: {reason(exc)}") from exc

    def _unpin(self) -> None:
        conn = getattr(self._local, "conn", None)
        self._local.conn = None
        if conn is not None:
            self.pool.putconn(conn)

    def close(self) -> None:
        self.pool.close()


def reason(exc: BaseException) -> str:
    """An error's first line: the lines after it (DETAIL) may quote the row's values."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
