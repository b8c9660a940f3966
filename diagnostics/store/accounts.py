"""Named users and API tokens as the store keeps them: plain records, whatever backend holds them.

A user is a person (radiologist, admin) or an integration that signs in by name; the password
is only ever stored as a self-describing KDF string (`diagnostics.service.users`). An API token
is stored as its SHA-256 digest: the token itself is shown once, when it is made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, get_args

from diagnostics.errors import RequestError
from diagnostics.store.audit import iso

Role = Literal["radiologist", "admin", "integration"]
ROLES: tuple[Role, ...] = get_args(Role)

NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
"""User and token names: they appear in the audit trail as `user:NAME` and `token:NAME`."""


def user_name(text: str) -> str:
    """A valid name (lower-cased), or a `RequestError` saying what a name may hold."""
    name = text.strip().lower()
    if not NAME.fullmatch(name):
        raise RequestError(
            "a name is 1-64 characters: letters a-z, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return name


def role_of(text: str) -> Role:
    for role in ROLES:
        if text == role:
            return role
    raise RequestError(f"role must be one of {', '.join(ROLES)}")


@dataclass(frozen=True)
class User:
    name: str
    role: Role
    password: str
    """The KDF string (algorithm, parameters, salt, hash); never shown."""
    disabled: bool
    created: float
    failed: int
    """Failed sign-ins since the last success or lockout."""
    locked_until: float | None
    last_login: float | None
    language: str | None = None
    """The review UI's language this user last chose (uz, ru, en); None: not chosen."""

    def locked(self, now: float) -> bool:
        return self.locked_until is not None and self.locked_until > now

    def listing(self, now: float) -> dict[str, object]:
        """What `users list` and the admin page show: never the hash."""
        return {
            "name": self.name,
            "role": self.role,
            "disabled": self.disabled,
            "locked": self.locked(now),
            "created": iso(self.created),
            "last_login": _iso(self.last_login),
            "language": self.language,
        }


@dataclass(frozen=True)
class ApiToken:
    name: str
    digest: str
    """SHA-256 of the token, hex."""
    created: float
    last_used: float | None
    revoked: float | None

    def listing(self) -> dict[str, object]:
        return {
            "name": self.name,
            "created": iso(self.created),
            "last_used": _iso(self.last_used),
            "revoked": _iso(self.revoked),
        }


def _iso(at: float | None) -> str | None:
    return iso(at) if at is not None else None
