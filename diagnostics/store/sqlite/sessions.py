"""Signed-out UI sessions, remembered until their cookies would have expired anyway.

A session cookie is stateless: its signature alone makes it valid. Signing out clears the
browser's copy, but a copy taken before (a shared workstation's profile, a proxy log) would
stay valid for the rest of the shift. So signing out records the session here, and a cookie
whose session is recorded is refused. The list lives in the storage folder (`ui-sessions.db`,
SQLite), so it survives restarts and every worker process of the service sees it. Only a
digest of the session's random identifier is stored, never the cookie.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from pathlib import Path

from diagnostics.errors import ConfigurationError, StoreError

DB_FILE = "ui-sessions.db"


def session_digest(session_id: str) -> str:
    return hashlib.sha256(b"session-id:" + session_id.encode("utf-8")).hexdigest()


class RevokedSessions:
    """A persistent set of session ids with expiry; expired entries are dropped on write."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            db = self._connect()
            try:
                # WAL: the lookup on every UI request never waits for a sign-out's write.
                db.execute("PRAGMA journal_mode=WAL")
                db.execute(
                    "CREATE TABLE IF NOT EXISTS revoked"
                    " (digest TEXT PRIMARY KEY, expires REAL NOT NULL)"
                )
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise ConfigurationError(
                f"{path}: cannot open the signed-out session list: {exc}"
            ) from None

    def _connect(self) -> sqlite3.Connection:
        # One short connection per call: callers are threads of different processes, and a
        # lookup is one indexed read.
        return sqlite3.connect(self.path, timeout=10.0, isolation_level=None)

    def revoke(self, session_id: str, expires: float, now: float | None = None) -> None:
        """Raises `StoreError` when the list cannot be written."""
        now = time.time() if now is None else now
        try:
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
                db.execute("DELETE FROM revoked WHERE expires <= ?", (now,))
                db.execute(
                    "INSERT OR REPLACE INTO revoked (digest, expires) VALUES (?, ?)",
                    (session_digest(session_id), expires),
                )
                db.execute("COMMIT")
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise StoreError(f"the signed-out session list cannot be written: {exc}") from exc

    def is_revoked(self, session_id: str) -> bool:
        """Raises `StoreError` when the list cannot be read."""
        try:
            db = self._connect()
            try:
                row = db.execute(
                    "SELECT 1 FROM revoked WHERE digest = ?", (session_digest(session_id),)
                ).fetchone()
            finally:
                db.close()
        except sqlite3.Error as exc:
            raise StoreError(f"the signed-out session list cannot be read: {exc}") from exc
        return row is not None
