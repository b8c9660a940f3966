"""Browser sessions for the review UI: a signed cookie that stands in for the bearer token.

A radiologist signs in once with a user name and password (or, before named users exist, an
API token); the browser then carries an HMAC-signed,
HttpOnly, SameSite=Strict cookie that expires after `SESSION_TTL_S`. The cookie holds the
actor (`user:NAME`, or `token:<sha6>` as the audit log names token holders), a CSRF token for
the forms, the expiry, and a keyed binding to the password hash or token used, so that a
password reset or removing a token from the configuration also ends every session opened
with it.

The signing key is random and kept in the storage folder (`ui-session.key`, mode 0600), not
derived from the tokens: a key derived from the tokens would let any token holder forge a
session in another holder's name. Every worker process of one service shares the storage
folder and so the key; deleting the file ends all sessions at the next start. Signing out
ends a session for good, not just in that browser (`diagnostics.store.sqlite.sessions`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from diagnostics.errors import ConfigurationError, StoreError
from diagnostics.store import RevokedSessions, revoked_sessions

log = logging.getLogger(__name__)

COOKIE = "diagnostics_session"
LOGIN_COOKIE = "diagnostics_login"
"""A short-lived nonce for the sign-in form (CSRF protection before there is a session)."""
COOKIE_PATH = "/"
"""The whole site: the API page (`/docs`) is read with the same session as the UI. The cookie
authenticates only there (`diagnostics.api.auth`): the API routes want a bearer token."""
SESSION_TTL_S = 8 * 3600
"""A working shift; then the radiologist signs in again."""
KEY_FILE = "ui-session.key"


@dataclass(frozen=True)
class Session:
    actor: str
    csrf: str
    expires: float
    binding: str
    """Keyed digest of the token the session was opened with ("" in insecure development)."""
    language: str | None = None
    """A named user's own language, read with the user on each request (never in the cookie)."""


class SessionCodec:
    """Issues and checks session cookies with one secret key."""

    def __init__(
        self, key: bytes, ttl_s: float = SESSION_TTL_S, revoked: RevokedSessions | None = None
    ) -> None:
        if len(key) < 32:
            raise ConfigurationError("the UI session key must be at least 32 bytes")
        self._key = key
        self.ttl_s = ttl_s
        self._revoked = revoked

    @classmethod
    def for_storage(
        cls, storage: Path, ttl_s: float = SESSION_TTL_S, database: str | None = None
    ) -> SessionCodec:
        """The codec of a storage folder; creates its key on first use (race-safe). With a
        shared PostgreSQL `database` the signed-out list is there, for every node."""
        path = storage / KEY_FILE
        storage.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_hex(32))
                handle.flush()
                os.fsync(handle.fileno())
        for _ in range(50):  # another process may have created it and not written it yet
            try:
                text = path.read_text(encoding="ascii").strip()
            except OSError as exc:
                raise ConfigurationError(f"{path}: cannot read the UI session key: {exc}") from exc
            if text:
                return cls(bytes.fromhex(text), ttl_s, revoked_sessions(storage, database))
            time.sleep(0.02)
        raise ConfigurationError(f"{path} is empty: delete it and restart the service")

    def binding(self, token: str) -> str:
        """What a session records about its token: useless without the key."""
        digest = hashlib.sha256(token.encode("utf-8")).digest()
        return self.binding_of_digest(digest)

    def binding_of_digest(self, digest: bytes) -> str:
        return hmac.new(self._key, b"token:" + digest, hashlib.sha256).hexdigest()[:32]

    def binding_of_user(self, name: str, password_hash: str) -> str:
        """A named user's binding: a new password (a reset) ends the user's sessions."""
        material = b"user:" + name.encode("utf-8") + b"\0" + password_hash.encode("ascii")
        return hmac.new(self._key, material, hashlib.sha256).hexdigest()[:32]

    def issue(self, actor: str, binding: str, now: float | None = None) -> tuple[str, Session]:
        """A new session and its cookie value."""
        now = time.time() if now is None else now
        session = Session(actor, secrets.token_urlsafe(24), now + self.ttl_s, binding)
        payload = json.dumps(
            {"a": session.actor, "c": session.csrf, "e": session.expires, "b": session.binding},
            separators=(",", ":"),
        ).encode("utf-8")
        body = _b64(payload)
        return f"{body}.{_b64(self._sign(body))}", session

    def read(self, value: str | None, now: float | None = None) -> Session | None:
        """The session of a cookie value, or None when it is forged, damaged or expired."""
        if not value or value.count(".") != 1:
            return None
        body, signature = value.split(".")
        try:
            given = _unb64(signature)
            payload = json.loads(_unb64(body))
        except (ValueError, binascii.Error):
            return None
        if not hmac.compare_digest(given, self._sign(body)):
            return None
        if not isinstance(payload, dict):
            return None
        try:
            session = Session(
                str(payload["a"]), str(payload["c"]), float(payload["e"]), str(payload["b"])
            )
        except (KeyError, TypeError, ValueError):
            return None
        now = time.time() if now is None else now
        if session.expires <= now:
            return None
        return None if self._is_revoked(session) else session

    def revoke(self, session: Session) -> None:
        """Sign a session out everywhere, not only in the browser that asked."""
        if self._revoked is not None:
            self._revoked.revoke(session.csrf, session.expires)

    def _is_revoked(self, session: Session) -> bool:
        if self._revoked is None:
            return False
        try:
            return self._revoked.is_revoked(session.csrf)
        except StoreError as exc:  # cannot tell whether it was signed out: refuse it
            log.error(
                "%s is unreadable (%s): UI sessions are refused until it is repaired or deleted",
                self._revoked.path,
                exc,
            )
            return True

    def _sign(self, body: str) -> bytes:
        return hmac.new(self._key, b"session:" + body.encode("ascii"), hashlib.sha256).digest()


def cookie_header(name: str, value: str, max_age: int, secure: bool) -> str:
    """A Set-Cookie value: HttpOnly and SameSite=Strict always, Secure over HTTPS."""
    parts = [
        f"{name}={value}",
        f"Path={COOKIE_PATH}",
        f"Max-Age={max_age}",
        "HttpOnly",
        "SameSite=Strict",
    ]
    if secure:
        parts.append("Secure")
    return "; ".join(parts)


def read_cookie(header: str | None, name: str) -> str | None:
    """One cookie's value from a Cookie header."""
    if not header:
        return None
    for part in header.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
