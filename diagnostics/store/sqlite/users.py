"""The `users` and `api_tokens` tables (`diagnostics.store.UserStore`; the PostgreSQL store
uses the same class).

Every read is one indexed lookup on this thread's connection: the service looks a user or a
token up on every request, so disabling a user or revoking a token takes effect at once, in
every worker process, without a restart (WAL: readers never wait for the CLI's writes).
"""

from __future__ import annotations

import time
from typing import Any

from diagnostics.errors import RequestError
from diagnostics.store.accounts import ApiToken, User, role_of
from diagnostics.store.sql import Connection
from diagnostics.store.sqlite.connection import SqliteBase
from diagnostics.store.sqlite.transaction import audit_row


def _user(row: Any) -> User:
    return User(
        name=str(row["name"]),
        role=role_of(str(row["role"])),
        password=str(row["password"]),
        disabled=bool(row["disabled"]),
        created=float(row["created"]),
        failed=int(row["failed"]),
        locked_until=row["locked_until"],
        last_login=row["last_login"],
        language=row["language"],
    )


def _token(row: Any) -> ApiToken:
    return ApiToken(
        str(row["name"]), str(row["digest"]), row["created"], row["last_used"], row["revoked"]
    )


class Users(SqliteBase):
    """Users and API tokens; each change commits with its audit row."""

    # -- users ------------------------------------------------------------------------------

    def user(self, name: str) -> User | None:
        row = self._connection().execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
        return _user(row) if row is not None else None

    def users(self) -> list[User]:
        rows = self._connection().execute("SELECT * FROM users ORDER BY name").fetchall()
        return [_user(r) for r in rows]

    def has_users(self) -> bool:
        return self._connection().execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None

    def add_user(self, name: str, role: str, password: str, actor: str) -> None:
        with self._transaction() as db:
            if db.execute("SELECT 1 FROM users WHERE name = ?", (name,)).fetchone():
                raise RequestError(f"user {name} exists already")
            db.execute(
                "INSERT INTO users (name, role, password, created) VALUES (?, ?, ?, ?)",
                (name, role_of(role), password, time.time()),
            )
            self._audit_in(db, actor, "user_added", name=name, role=role)

    def set_disabled(self, name: str, disabled: bool, actor: str) -> None:
        with self._transaction() as db:
            found = db.execute(
                "UPDATE users SET disabled = ?, failed = 0, locked_until = NULL WHERE name = ?",
                (int(disabled), name),
            ).rowcount
            if not found:
                raise RequestError(f"no user {name}")
            self._audit_in(db, actor, "user_disabled" if disabled else "user_enabled", name=name)

    def set_password(self, name: str, password: str, actor: str) -> None:
        with self._transaction() as db:
            found = db.execute(
                "UPDATE users SET password = ?, failed = 0, locked_until = NULL WHERE name = ?",
                (password, name),
            ).rowcount
            if not found:
                raise RequestError(f"no user {name}")
            self._audit_in(db, actor, "user_password_reset", name=name)

    def sign_in_failed(self, name: str, limit: int, lock_s: float, now: float) -> bool:
        """Count a failed sign-in; at `limit` failures lock the user for `lock_s`. True when
        this failure locked it."""
        with self._transaction() as db:
            row = db.execute("SELECT failed FROM users WHERE name = ?", (name,)).fetchone()
            if row is None:
                return False
            failed = int(row["failed"]) + 1
            if failed >= limit:
                db.execute(
                    "UPDATE users SET failed = 0, locked_until = ? WHERE name = ?",
                    (now + lock_s, name),
                )
                self._audit_in(db, f"user:{name}", "user_locked", minutes=round(lock_s / 60))
                return True
            db.execute("UPDATE users SET failed = ? WHERE name = ?", (failed, name))
            return False

    def set_language(self, name: str, language: str) -> None:
        """The user's own UI language (not audited: a display preference)."""
        with self._transaction() as db:
            db.execute("UPDATE users SET language = ? WHERE name = ?", (language, name))

    def signed_in(self, name: str, now: float) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE users SET failed = 0, locked_until = NULL, last_login = ? WHERE name = ?",
                (now, name),
            )

    # -- API tokens -------------------------------------------------------------------------

    def tokens(self) -> list[ApiToken]:
        rows = self._connection().execute("SELECT * FROM api_tokens ORDER BY name").fetchall()
        return [_token(r) for r in rows]

    def add_token(self, name: str, digest: str, actor: str) -> None:
        """A new token; the name of a revoked one may be used again."""
        with self._transaction() as db:
            row = db.execute("SELECT revoked FROM api_tokens WHERE name = ?", (name,)).fetchone()
            if row is not None and row["revoked"] is None:
                raise RequestError(f"token {name} exists already (revoke it first)")
            db.execute("DELETE FROM api_tokens WHERE name = ?", (name,))
            db.execute(
                "INSERT INTO api_tokens (name, digest, created) VALUES (?, ?, ?)",
                (name, digest, time.time()),
            )
            self._audit_in(db, actor, "token_added", name=name)

    def revoke_token(self, name: str, actor: str) -> None:
        with self._transaction() as db:
            found = db.execute(
                "UPDATE api_tokens SET revoked = ? WHERE name = ? AND revoked IS NULL",
                (time.time(), name),
            ).rowcount
            if not found:
                raise RequestError(f"no active token {name}")
            self._audit_in(db, actor, "token_revoked", name=name)

    def token_named(self, digest: str) -> str | None:
        """The name of the active token with this digest."""
        row = (
            self._connection()
            .execute("SELECT name FROM api_tokens WHERE digest = ? AND revoked IS NULL", (digest,))
            .fetchone()
        )
        return str(row["name"]) if row is not None else None

    def token_used(self, name: str, now: float) -> None:
        with self._transaction() as db:
            db.execute("UPDATE api_tokens SET last_used = ? WHERE name = ?", (now, name))

    def _audit_in(self, db: Connection, actor: str, action: str, **detail: object) -> None:
        audit_row(db, actor, action, **detail)
