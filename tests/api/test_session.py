"""UI session cookies: signed, expiring, bound to a configured token; the middleware lets only
the sign-in page and static files through without one, and sends browsers to sign in."""

from __future__ import annotations

import stat
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from diagnostics.api.auth import SESSION_KEY, AuthPolicy, BearerAuth, actor_of, token_actor
from diagnostics.api.session import COOKIE, SessionCodec, cookie_header, read_cookie
from diagnostics.store.sqlite.sessions import RevokedSessions
from tests.helpers.asgi import asgi_request

TOKENS = ("first-token-0123456789", "second-token-0123456789")


def test_cookies_are_signed_expire_and_survive_a_restart(tmp_path: Path) -> None:
    codec = SessionCodec.for_storage(tmp_path)
    key = tmp_path / "ui-session.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    value, session = codec.issue("token:abc123", codec.binding(TOKENS[0]), now=1000.0)
    assert codec.read(value, now=1001.0) == session
    assert SessionCodec.for_storage(tmp_path).read(value, now=1001.0) == session  # same key
    assert codec.read(value, now=1000.0 + codec.ttl_s + 1) is None  # expired
    body, signature = value.split(".")
    forged = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    assert codec.read(f"{forged}.{signature}", now=1001.0) is None
    assert codec.read("garbage", now=1001.0) is None and codec.read(None) is None
    other = SessionCodec.for_storage(tmp_path / "elsewhere")
    assert other.read(value, now=1001.0) is None  # another service's key
    assert TOKENS[0] not in value and session.csrf


def test_signing_out_ends_the_session_everywhere_and_for_good(tmp_path: Path) -> None:
    codec = SessionCodec.for_storage(tmp_path)
    kept, kept_session = codec.issue("token:abc123", codec.binding(TOKENS[0]), now=1000.0)
    ended, ended_session = codec.issue("token:abc123", codec.binding(TOKENS[0]), now=1000.0)
    codec.revoke(ended_session)
    assert codec.read(ended, now=1001.0) is None
    assert codec.read(kept, now=1001.0) == kept_session  # only that session
    restarted = SessionCodec.for_storage(tmp_path)  # another worker, or after a restart
    assert restarted.read(ended, now=1001.0) is None
    assert ended_session.csrf not in (tmp_path / "ui-sessions.db").read_bytes().decode("latin-1")


def test_signed_out_sessions_are_forgotten_once_they_would_have_expired(tmp_path: Path) -> None:
    revoked = RevokedSessions(tmp_path / "ui-sessions.db")
    revoked.revoke("old", expires=1000.0, now=900.0)
    revoked.revoke("new", expires=5000.0, now=1001.0)  # a write prunes what has expired
    assert not revoked.is_revoked("old") and revoked.is_revoked("new")


def test_an_unreadable_signed_out_list_refuses_sessions(tmp_path: Path) -> None:
    codec = SessionCodec.for_storage(tmp_path)
    value, _ = codec.issue("token:abc123", codec.binding(TOKENS[0]))
    (tmp_path / "ui-sessions.db").write_bytes(b"not a database" * 100)
    assert codec.read(value) is None


def test_cookie_attributes() -> None:
    header = cookie_header(COOKIE, "v", 60, secure=True)
    for part in ("HttpOnly", "SameSite=Strict", "Secure", "Path=/", "Max-Age=60"):
        assert part in header
    assert "Secure" not in cookie_header(COOKIE, "v", 60, secure=False)
    assert read_cookie(f"a=1; {COOKIE}=xyz; b=2", COOKIE) == "xyz"


async def whoami(request: Request) -> JSONResponse:
    session = request.scope.get(SESSION_KEY)
    return JSONResponse({"actor": actor_of(request.scope), "session": session is not None})


def _client(policy: AuthPolicy):  # type: ignore[no-untyped-def]
    paths = ("/ui/", "/ui/login", "/ui/static/ui.css", "/ui/studies/1.2", "/v1/worklist")
    app = BearerAuth(
        Starlette(routes=[Route(p, whoami, methods=["GET", "POST"]) for p in paths]), policy=policy
    )

    def call(method: str, path: str, **headers: str) -> httpx.Response:
        return asgi_request(app, method, path, headers=headers)

    return call


def test_ui_needs_a_session_and_sends_browsers_to_sign_in(tmp_path: Path) -> None:
    audit: list[tuple[str, str, dict[str, object]]] = []
    codec = SessionCodec.for_storage(tmp_path)
    policy = AuthPolicy(TOKENS, sessions=codec, audit=lambda a, b, **d: audit.append((a, b, d)))
    call = _client(policy)
    for path in ("/ui/login", "/ui/static/ui.css"):
        assert call("GET", path).status_code == 200, path
    page = call("GET", "/ui/studies/1.2?image=0")
    assert page.status_code == 303
    assert page.headers["location"] == "/ui/login?next=%2Fui%2Fstudies%2F1.2%3Fimage%3D0"
    assert call("POST", "/ui/studies/1.2").status_code == 401
    assert policy.refusals is not None
    policy.refusals.close()  # the minute's tally, written at once
    assert ("client:192.0.2.7", "auth_failed") in {(a, b) for a, b, _ in audit}

    value, _ = codec.issue(token_actor(TOKENS[1]), codec.binding(TOKENS[1]))
    ok = call("GET", "/ui/", cookie=f"{COOKIE}={value}")
    assert ok.status_code == 200
    assert ok.json() == {"actor": token_actor(TOKENS[1]), "session": True}
    # The cookie opens the UI only, never the API.
    assert call("GET", "/v1/worklist", cookie=f"{COOKIE}={value}").status_code == 401
    # A bearer token still works on UI paths (scripts), without a session.
    bearer = call("GET", "/ui/", authorization=f"Bearer {TOKENS[0]}")
    assert bearer.json() == {"actor": token_actor(TOKENS[0]), "session": False}


def test_removing_a_token_ends_its_sessions(tmp_path: Path) -> None:
    codec = SessionCodec.for_storage(tmp_path)
    value, _ = codec.issue(token_actor(TOKENS[1]), codec.binding(TOKENS[1]))
    call = _client(AuthPolicy(TOKENS[:1], sessions=codec))
    assert call("GET", "/ui/", cookie=f"{COOKIE}={value}").status_code == 303
