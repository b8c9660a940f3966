"""Named users: password hashing, sign-in with lockout, API tokens, and the single-sign-on seam.

Passwords are hashed with scrypt (memory-hard, stdlib), a random 16-byte salt each, and the
parameters stored with the hash (`scrypt$n$r$p$salt$hash`), so they can be raised later without
breaking stored hashes. Sign-in goes through an `Authenticator`: `PasswordAuthenticator` today;
an OIDC one (the hospital's identity provider) implements the same protocol and hands back the
same `SignIn`, and nothing after it changes. Whatever fails, the person sees one message: it
never says whether the user exists, is disabled or is locked (the audit trail does).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal, Protocol

from diagnostics.errors import RequestError
from diagnostics.store import UserStore
from diagnostics.store.accounts import Role, role_of, user_name

SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
"""16 MiB and ~50 ms a hash on a modest CPU: slow for a guesser, quick for a person."""
SALT_BYTES = 16
MIN_PASSWORD = 10
MAX_PASSWORD = 1024
LOCK_AFTER = 5
"""Failed sign-ins in a row that lock a user ..."""
LOCK_S = 15 * 60.0
"""... for this long."""
ADDRESS_LIMIT = 30
"""Failed sign-ins one network address may make ..."""
ADDRESS_WINDOW_S = 15 * 60.0
"""... within this window, whatever the user names: guessing across many users is slowed too."""
TOKEN_BYTES = 32


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """The stored form of a password: scrypt with its parameters and a fresh salt."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Whether `password` matches a stored hash (constant-time compare); False for a damaged one."""
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt":
            return False
        expected = base64.b64decode(digest)
        given = _scrypt(password, base64.b64decode(salt), int(n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(given, expected)


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise RequestError(f"a password needs at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise RequestError(f"a password has at most {MAX_PASSWORD} characters")
    return password


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r, dklen=32
    )


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_DUMMY = hash_password("not a password of anyone", salt=b"\0" * SALT_BYTES)
"""Verified against when the user does not exist, so that answer takes as long as the others."""


# -- users ------------------------------------------------------------------------------------


def add_user(users: UserStore, name: str, role: str, password: str, actor: str) -> str:
    name = user_name(name)
    users.add_user(name, role_of(role), hash_password(check_password(password)), actor)
    return name


def reset_password(users: UserStore, name: str, password: str, actor: str) -> None:
    users.set_password(user_name(name), hash_password(check_password(password)), actor)


def set_disabled(users: UserStore, name: str, disabled: bool, actor: str) -> None:
    users.set_disabled(user_name(name), disabled, actor)


def user_actor(name: str) -> str:
    """How a named user appears in the audit trail and on the study page."""
    return f"user:{name}"


# -- tokens -----------------------------------------------------------------------------------


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def add_token(users: UserStore, name: str, actor: str) -> tuple[str, str]:
    """(name, the new token): the token is returned once and stored only as its SHA-256."""
    name = user_name(name)
    token = "dx_" + secrets.token_urlsafe(TOKEN_BYTES)
    users.add_token(name, token_digest(token), actor)
    return name, token


def revoke_token(users: UserStore, name: str, actor: str) -> None:
    users.revoke_token(user_name(name), actor)


# -- sign-in ----------------------------------------------------------------------------------

Refusal = Literal["", "bad_credentials", "address_limited"]


@dataclass(frozen=True)
class SignIn:
    """What an `Authenticator` decided: a user and role, or a refusal (`why` is for the audit
    trail only; the person is shown the same message for every refusal but the address limit)."""

    name: str | None
    role: Role | None
    refusal: Refusal = ""
    why: str = ""


class Authenticator(Protocol):
    """The single-sign-on seam: passwords today, an OIDC code flow later (see the module doc)."""

    def sign_in(self, name: str, secret: str, address: str) -> SignIn: ...


class AddressLimiter:
    """Failed sign-ins per network address in a sliding window (per process)."""

    def __init__(self, limit: int = ADDRESS_LIMIT, window_s: float = ADDRESS_WINDOW_S) -> None:
        self.limit, self.window_s = limit, window_s
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, address: str, now: float) -> bool:
        with self._lock:
            recent = self._recent(address, now)
            return len(recent) >= self.limit

    def failed(self, address: str, now: float) -> None:
        with self._lock:
            self._recent(address, now).append(now)
            if len(self._failures) > 10_000:  # a flood of addresses: forget the quiet ones
                for key in [k for k, v in self._failures.items() if not v]:
                    del self._failures[key]

    def _recent(self, address: str, now: float) -> deque[float]:
        recent = self._failures.setdefault(address, deque())
        while recent and recent[0] <= now - self.window_s:
            recent.popleft()
        return recent


class PasswordAuthenticator:
    """User name and password against the store, with per-user lockout and a per-address limit."""

    def __init__(self, users: UserStore, limiter: AddressLimiter | None = None) -> None:
        self.users = users
        self.limiter = limiter or AddressLimiter()

    def sign_in(self, name: str, secret: str, address: str) -> SignIn:
        now = time.time()
        if self.limiter.blocked(address, now):
            return SignIn(None, None, "address_limited", "address_limited")
        try:
            name = user_name(name)
        except RequestError:
            name = ""
        user = self.users.user(name) if name else None
        matched = verify_password(secret[:MAX_PASSWORD], user.password if user else _DUMMY)
        why = ""
        if user is None:
            why = "unknown_user"
        elif user.disabled:
            why = "disabled"
        elif user.locked(now):
            why = "locked"
        elif not matched:
            why = "wrong_password"
            self.users.sign_in_failed(user.name, LOCK_AFTER, LOCK_S, now)
        if why:
            self.limiter.failed(address, now)
            return SignIn(None, None, "bad_credentials", why)
        assert user is not None
        self.users.signed_in(user.name, now)
        return SignIn(user.name, user.role)
