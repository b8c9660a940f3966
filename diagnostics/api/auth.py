"""Bearer-token authentication as a pure ASGI middleware: nothing is open by default.

Only the probes and metrics (`/healthz`, `/livez`, `/readyz`, `/metrics`), the review UI's
sign-in page and its static files pass without a token. The rest of the review UI (`/ui`) and
the API page (`/`, `/docs`, `/docs.json`) also accept a signed session cookie
(`diagnostics.api.session`); a browser without one is sent to the sign-in page (for the API
page, only a client that asks for HTML: others get 401, as from any API route).
Tokens are compared in constant time (as SHA-256 digests, so their lengths leak nothing either).
A request that passes carries its actor, `token:<first 6 hex digits of the token's SHA-256>`,
in the ASGI scope under `ACTOR_KEY`, so the audit log records who sent what without ever
recording a token. Refusals are counted and audited per client address and minute
(`diagnostics.api.refusals`), by route template, never by raw path: refusing must stay cheap.

Named users and tokens (issue #14, `diagnostics.service.users`): besides the environment's
tokens, the store's API tokens (one per integration, looked up per request, so a revoked one is
refused at once) authenticate as `token:NAME`. A session of a named user is `user:NAME` and
holds only while that user exists, is enabled and keeps the password it signed in with. Each
request carries its role under `ROLE_KEY`: tokens are `integration` (API only); once the first
user exists, the UI is for named users only. Until then a token (and a session opened with
one) stands for an administrator, so a fresh installation can be used and set up.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlencode

import anyio.to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from diagnostics.api.docs import DOCS_PATHS
from diagnostics.api.refusals import RefusalLog
from diagnostics.api.routes import method_label, route_name
from diagnostics.api.session import COOKIE, Session, SessionCodec, read_cookie
from diagnostics.api.status import RETRY_AFTER_S
from diagnostics.store import UserStore
from diagnostics.store.accounts import Role

UI_PREFIX = "/ui"
UI_LOGIN = "/ui/login"
EXEMPT_PATHS: frozenset[str] = frozenset({"/healthz", "/livez", "/readyz", "/metrics", UI_LOGIN})
EXEMPT_PREFIXES: tuple[str, ...] = ("/ui/static/",)
"""The UI's CSS and JavaScript: the same for everyone, no data in them."""
ACTOR_KEY = "diagnostics.actor"
SESSION_KEY = "diagnostics.session"
"""The `Session` of a request authenticated by its UI cookie (absent for bearer requests)."""
ROLE_KEY = "diagnostics.role"
"""The `Role` of the request's actor (see the module docstring)."""
LANGUAGE_KEY = "diagnostics.language"
"""A signed-in named user's own language, when they chose one (`diagnostics.ui.language`)."""
REFUSED_KEY = "diagnostics.refused"
"""Set (to the reason) on the scope of a request authentication refused: no metrics series."""
REALM = "diagnostics"
USER_PREFIX = "user:"
TOKEN_USE_WRITE_S = 60.0
"""A named token's `last_used` is written at most this often per process: a read per request,
a write per minute."""

AuditFn = Callable[..., None]
"""`audit(actor, action, **detail)`, e.g. `Store.audit`."""


def token_actor(token: str) -> str:
    """How a token appears in the audit log: enough to tell tokens apart, useless to an attacker."""
    return "token:" + hashlib.sha256(token.encode("utf-8")).hexdigest()[:6]


def client_actor(scope: Mapping[str, Any]) -> str:
    client = scope.get("client")
    if client:
        return f"client:{client[0]}"
    return "client:unknown"


def role_of(scope: Mapping[str, Any]) -> Role | None:
    """The role of a request's actor, None when unauthenticated."""
    role = scope.get(ROLE_KEY)
    return role if role in ("radiologist", "admin", "integration") else None


def actor_of(scope: Mapping[str, Any]) -> str:
    """The authenticated actor of a request (the client address if none was recorded)."""
    actor = scope.get(ACTOR_KEY)
    return str(actor) if actor else client_actor(scope)


@dataclass(frozen=True)
class AuthPolicy:
    """Who may call the service: the configured tokens, or anyone in insecure development mode."""

    tokens: tuple[str, ...]
    insecure_dev: bool = False
    """With no tokens configured, let every request through as `anonymous`."""
    audit: AuditFn | None = None
    sessions: SessionCodec | None = None
    """Signs and checks review-UI session cookies; None: the UI accepts bearer tokens only."""
    refusals: RefusalLog | None = None
    """Counts and audits refusals; None: one is built on `audit`."""
    users: UserStore | None = None
    """Named users and API tokens; None: the environment's tokens only."""
    _digests: tuple[bytes, ...] = field(init=False, repr=False)
    _token_writes: dict[str, float] = field(init=False, repr=False, default_factory=dict)
    _lock: threading.Lock = field(init=False, repr=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        digests = tuple(hashlib.sha256(t.encode("utf-8")).digest() for t in self.tokens)
        object.__setattr__(self, "_digests", digests)
        if self.refusals is None and self.audit is not None:
            object.__setattr__(self, "refusals", RefusalLog(self.audit))

    @property
    def open(self) -> bool:
        return self.insecure_dev and not self.tokens

    def authenticate(self, authorization: str | None) -> tuple[str | None, str]:
        """(actor, "") for a valid header; (None, why) otherwise."""
        if self.open:
            return "anonymous", ""
        if not authorization:
            return None, "missing"
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return None, "not_bearer"
        presented = credentials.strip()
        digest = hashlib.sha256(presented.encode("utf-8")).digest()
        matched = False
        for known in self._digests:  # no early exit: every token is compared
            matched |= hmac.compare_digest(digest, known)
        if not matched:
            return None, "invalid_token"
        return token_actor(presented), ""

    def named_token(self, authorization: str | None) -> str | None:
        """The actor of a valid store token (`token:NAME`), read per request: blocking, so the
        middleware calls it in a worker thread."""
        if self.users is None or not authorization:
            return None
        scheme, _, credentials = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            return None
        digest = hashlib.sha256(credentials.strip().encode("utf-8")).hexdigest()
        name = self.users.token_named(digest)
        if name is None:
            return None
        now = time.time()
        with self._lock:
            # Keyed by digest: a token made again under a revoked one's name is a new token.
            due = now - self._token_writes.get(digest, 0.0) >= TOKEN_USE_WRITE_S
            if due:
                self._token_writes[digest] = now
        if due:
            self.users.token_used(name, now)
        return "token:" + name

    def people_only(self) -> bool:
        """Whether the UI is for named users only: once the first user exists."""
        return self.users is not None and self.users.has_users()

    def session(self, cookie: str | None) -> Session | None:
        """The valid session of a cookie (see `session_role`)."""
        found = self.session_role(cookie)
        return found[0] if found is not None else None

    def session_role(self, cookie: str | None) -> tuple[Session, Role] | None:
        """The valid session of a cookie and its role: signed by us, unexpired, and its user
        still enabled with the same password (or its token still configured, while there are
        no named users)."""
        if self.sessions is None:
            return None
        session = self.sessions.read(cookie)
        if session is None:
            return None
        if session.actor.startswith(USER_PREFIX):
            return self._user_session(session)
        if self.open:
            return session, "admin"
        if self.people_only():
            return None
        matched = False
        for known in self._digests:  # no early exit, as for tokens
            matched |= hmac.compare_digest(session.binding, self.sessions.binding_of_digest(known))
        return (session, "admin") if matched else None

    def _user_session(self, session: Session) -> tuple[Session, Role] | None:
        if self.users is None or self.sessions is None:
            return None
        user = self.users.user(session.actor.removeprefix(USER_PREFIX))
        if user is None or user.disabled or user.role == "integration":
            return None
        binding = self.sessions.binding_of_user(user.name, user.password)
        if not hmac.compare_digest(session.binding, binding):
            return None
        return (replace(session, language=user.language), user.role)


PolicySource = AuthPolicy | Callable[[], AuthPolicy | None]


class BearerAuth:
    """ASGI middleware: 401 with `WWW-Authenticate: Bearer` unless the request has a valid token.

    `policy` may be a callable, resolved per request, for services whose settings exist only
    once the service instance is built; while it returns None every protected path gets 503.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        policy: PolicySource,
        exempt: Collection[str] = EXEMPT_PATHS,
        exempt_prefixes: Collection[str] = EXEMPT_PREFIXES,
    ) -> None:
        self.app = app
        self._policy = policy
        self.exempt = frozenset(exempt)
        self.exempt_prefixes = tuple(exempt_prefixes)

    def _resolve(self) -> AuthPolicy | None:
        return self._policy if isinstance(self._policy, AuthPolicy) else self._policy()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        if path in self.exempt or path.startswith(self.exempt_prefixes):
            await self.app(scope, receive, send)
            return
        policy = self._resolve()
        if policy is None:
            body = {"error": "NotReady", "message": "the service is starting; retry shortly"}
            await _respond(scope, send, 503, body, {"Retry-After": str(RETRY_AFTER_S)})
            return
        if policy.refusals is not None and policy.refusals.due():
            await _flush(policy.refusals)
        authorization = _header(scope, b"authorization")
        actor, problem = policy.authenticate(authorization)
        if problem == "invalid_token" and policy.users is not None:
            named = await anyio.to_thread.run_sync(policy.named_token, authorization)
            if named is not None:
                actor, problem = named, ""
        ui = path == UI_PREFIX or path.startswith(UI_PREFIX + "/") or path in DOCS_PATHS
        if ui and authorization is None:
            # A browser: its session cookie, never the open development door, stands for it.
            found = policy.session_role(read_cookie(_header(scope, b"cookie"), COOKIE))
            if found is not None:
                session, role = found
                extra = {
                    ACTOR_KEY: session.actor,
                    SESSION_KEY: session,
                    ROLE_KEY: role,
                    LANGUAGE_KEY: session.language,
                }
                await self.app({**scope, **extra}, receive, send)
                return
            actor, problem = None, "no_session"
        if actor is None:
            await self._refuse(scope, send, policy, problem)
            return
        role = "integration"
        if ui and path not in DOCS_PATHS:
            if policy.people_only():
                body = {
                    "error": "forbidden",
                    "message": f"API tokens are for the API: people sign in at {UI_LOGIN}",
                }
                await _respond(scope, send, 403, body, {})
                return
            role = "admin"  # no named users yet: the installation's tokens set it up
        await self.app({**scope, ACTOR_KEY: actor, ROLE_KEY: role}, receive, send)

    async def _refuse(self, scope: Scope, send: Send, policy: AuthPolicy, problem: str) -> None:
        scope[REFUSED_KEY] = problem
        if policy.refusals is not None:
            route = route_name(scope)
            policy.refusals.refused(client_actor(scope), problem, method_label(scope), route)
        method = scope.get("method", "WEBSOCKET")
        path = str(scope.get("path", ""))
        browser = path not in DOCS_PATHS or "text/html" in (_header(scope, b"accept") or "")
        if problem == "no_session" and method in ("GET", "HEAD") and browser:
            # Pages and images alike: the browser goes to the sign-in page and comes back.
            target = UI_LOGIN + "?" + urlencode({"next": _path_and_query(scope)})
            await _respond(scope, send, 303, {"error": "sign in first"}, {"Location": target})
            return
        challenge = f'Bearer realm="{REALM}"'
        if problem == "invalid_token":
            challenge += ', error="invalid_token"'
        elif problem == "not_bearer":
            challenge += ', error="invalid_request"'
        messages = {
            "invalid_token": "the bearer token is not valid",
            "no_session": f"sign in at {UI_LOGIN} first (or send a bearer token)",
        }
        default = "send Authorization: Bearer <token> (a token from DIAGNOSTICS_API_TOKEN)"
        body = {"error": "unauthorized", "message": messages.get(problem, default)}
        await _respond(scope, send, 401, body, {"WWW-Authenticate": challenge})


async def _flush(refusals: RefusalLog) -> None:
    """Write finished minutes off the event loop (one request a minute pays for it)."""
    await anyio.to_thread.run_sync(refusals.flush)


def _path_and_query(scope: Scope) -> str:
    query = bytes(scope.get("query_string", b"")).decode("latin-1")
    path = str(scope.get("path", ""))
    return f"{path}?{query}" if query else path


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


async def _respond(
    scope: Scope, send: Send, status: int, body: Mapping[str, object], headers: Mapping[str, str]
) -> None:
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1008})
        return
    payload = json.dumps(body).encode("utf-8")
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": payload})
