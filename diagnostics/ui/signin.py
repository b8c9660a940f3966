"""Sign-in with a user name and password for the review UI (`/ui/login`).

The work is an `Authenticator`'s (`diagnostics.service.users`: passwords today, single sign-on
later); this turns its answer into a session binding or the one message a person sees. That
message never tells whether the user exists, is disabled or is locked: the audit trail does
(`ui_sign_in_failed` with the reason, and the user's name only when such a user exists).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

import anyio.to_thread
from starlette.requests import Request

from diagnostics.api.auth import USER_PREFIX, AuthPolicy, client_actor
from diagnostics.api.session import Session
from diagnostics.errors import RequestError, StoreError
from diagnostics.i18n import N_
from diagnostics.service.users import Authenticator, PasswordAuthenticator, SignIn, user_actor
from diagnostics.store import UserStore
from diagnostics.store.accounts import user_name

log = logging.getLogger(__name__)

BAD_CREDENTIALS = N_("The user name or password is not right, or this account cannot sign in now.")
"""The one answer to every refused sign-in but the address limit."""
ADDRESS_LIMITED = N_("Too many failed sign-ins from this computer: wait 15 minutes.")


@dataclass(frozen=True)
class Refused:
    message: str
    """English, marked for translation: the same whatever the reason but the address limit."""
    detail: dict[str, object] = field(default_factory=dict)
    """For the audit trail: the reason, and the user's name when such a user exists."""


class PasswordSignIn:
    """One per UI: it holds the authenticator, and so the per-address failure counts."""

    def __init__(self) -> None:
        self._authenticator: Authenticator | None = None
        self._users: UserStore | None = None

    def authenticator(self, users: UserStore) -> Authenticator:
        if self._authenticator is None or self._users is not users:
            self._authenticator, self._users = PasswordAuthenticator(users), users
        return self._authenticator

    async def sign_in(
        self, request: Request, policy: AuthPolicy, form: Mapping[str, str]
    ) -> tuple[str, str] | Refused:
        """(actor, session binding) of a signed-in user, or why not."""
        users, sessions = policy.users, policy.sessions
        if users is None or sessions is None:
            return Refused(BAD_CREDENTIALS, {"reason": "no_user_store"})
        name = form.get("username", "")[:200]
        address = client_actor(request.scope).removeprefix("client:")
        call = functools.partial(self._check, users, name, form.get("password", ""), address)
        signed, stored = await anyio.to_thread.run_sync(call)
        if signed.refusal or signed.name is None or stored is None:
            detail: dict[str, object] = {"reason": signed.why or "unknown"}
            if signed.why not in ("unknown_user", "address_limited"):
                detail["user"] = user_actor(_known(name))
            limited = signed.refusal == "address_limited"
            return Refused(ADDRESS_LIMITED if limited else BAD_CREDENTIALS, detail)
        return user_actor(signed.name), sessions.binding_of_user(signed.name, stored)

    def _check(
        self, users: UserStore, name: str, password: str, address: str
    ) -> tuple[SignIn, str | None]:
        signed = self.authenticator(users).sign_in(name, password, address)
        user = users.user(signed.name) if signed.name else None
        if user is not None and user.role == "integration":  # API tokens only, no UI
            return SignIn(None, None, "bad_credentials", "integration_account"), None
        return signed, user.password if user is not None else None


def token_sign_in(policy: AuthPolicy, form: Mapping[str, str]) -> tuple[str, str] | Refused:
    """(actor, session binding) of an API token, accepted only while no named user exists
    (a fresh installation's way in); blocking (one read)."""
    token = form.get("token", "").strip()
    actor, problem = policy.authenticate(f"Bearer {token}" if token else None)
    if actor is None:
        return Refused(N_("That token is not valid."), {"reason": problem})
    if policy.people_only():
        text = N_("Named users exist: sign in with your user name and password.")
        return Refused(text, {"reason": "people_only"})
    sessions = policy.sessions
    return actor, sessions.binding(token) if sessions is not None and token else ""


def remember_language(users: UserStore | None, session: Session | None, lang: str) -> None:
    """A named user's switch of language (`?lang=`) is theirs on every workstation from then
    on (rare: one small write, when it changes)."""
    if users is None or session is None or session.language == lang:
        return
    if session.actor.startswith(USER_PREFIX):
        try:
            users.set_language(session.actor.removeprefix(USER_PREFIX), lang)
        except StoreError as exc:
            log.warning("the user's language was not saved: %s", exc)


def _known(name: str) -> str:
    try:
        return user_name(name)
    except RequestError:
        return "?"
