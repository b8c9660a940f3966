"""Bearer-token middleware: closed by default, open probes, audited refusals, no token leaks."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from diagnostics.api.auth import ACTOR_KEY, AuthPolicy, BearerAuth, actor_of, token_actor
from diagnostics.api.refusals import RefusalLog
from tests.helpers.asgi import asgi_request

TOKENS = ("first-token-0123456789", "second-token-0123456789")


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"actor": actor_of(request.scope), "raw": request.scope.get(ACTOR_KEY)})


Client = Callable[..., httpx.Response]


def make_app(policy: object) -> Client:
    app = Starlette(
        routes=[Route(p, whoami) for p in ("/v1/worklist", "/healthz", "/metrics")],
        middleware=[Middleware(BearerAuth, policy=policy)],
    )

    def get(path: str, headers: dict[str, str] | None = None) -> httpx.Response:
        return asgi_request(app, "GET", path, headers=headers)

    return get


@pytest.fixture
def audit() -> list[tuple[str, str, dict[str, object]]]:
    return []


@pytest.fixture
def policy(audit: list[tuple[str, str, dict[str, object]]]) -> AuthPolicy:
    def record(actor: str, action: str, **detail: object) -> None:
        audit.append((actor, action, detail))

    return AuthPolicy(TOKENS, refusals=RefusalLog(record, timer=False))


@pytest.fixture
def client(policy: AuthPolicy) -> Client:
    return make_app(policy)


def test_probes_and_metrics_are_open(client: Client) -> None:
    assert client("/healthz").status_code == 200
    assert client("/metrics").status_code == 200


def test_a_valid_token_names_its_actor_without_the_token(client: Client) -> None:
    for token in TOKENS:
        response = client("/v1/worklist", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 200
        actor = response.json()["actor"]
        assert actor == "token:" + hashlib.sha256(token.encode()).hexdigest()[:6]
        assert token not in actor
    assert token_actor(TOKENS[0]) != token_actor(TOKENS[1])


@pytest.mark.parametrize(
    ("header", "reason", "challenge"),
    [
        (None, "missing", 'Bearer realm="diagnostics"'),
        ("Bearer wrong-token-0123456789", "invalid_token", 'error="invalid_token"'),
        (f"Basic {TOKENS[0]}", "not_bearer", 'error="invalid_request"'),
        ("Bearer ", "not_bearer", 'error="invalid_request"'),
        (f"Bearer {TOKENS[0]}x", "invalid_token", 'error="invalid_token"'),
    ],
)
def test_refusals_are_401_with_a_challenge_and_audited(
    client: Client,
    policy: AuthPolicy,
    audit: list[tuple[str, str, dict[str, object]]],
    header: str | None,
    reason: str,
    challenge: str,
) -> None:
    headers = {"Authorization": header} if header is not None else {}
    response = client("/v1/worklist", headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert challenge in response.headers["WWW-Authenticate"]
    assert audit == []  # tallied per source and minute, written when the minute is over
    assert policy.refusals is not None
    policy.refusals.close()
    ((actor, action, detail),) = audit
    assert actor == "client:192.0.2.7" and action == "auth_failed"
    assert detail["count"] == 1 and detail["reasons"] == {reason: 1}
    assert detail["routes"] == {"/v1/worklist": 1}  # the route template, never the raw path
    assert TOKENS[0] not in repr(audit) + response.text


def test_insecure_dev_without_tokens_lets_everyone_in_as_anonymous() -> None:
    client = make_app(AuthPolicy((), insecure_dev=True))
    assert client("/v1/worklist").json()["actor"] == "anonymous"
    client = make_app(AuthPolicy(TOKENS, insecure_dev=True))
    assert client("/v1/worklist").status_code == 401  # tokens still win


def test_no_tokens_and_not_insecure_refuses_everything() -> None:
    client = make_app(AuthPolicy(()))
    assert client("/v1/worklist", headers={"Authorization": "Bearer x"}).status_code == 401


def test_a_policy_not_built_yet_is_503_not_open() -> None:
    client = make_app(lambda: None)
    assert client("/v1/worklist").status_code == 503
    assert client("/healthz").status_code == 200


def test_the_api_pages_paths_have_one_definition() -> None:
    """Authentication opens to the session cookie exactly the paths the API page serves."""
    from diagnostics.api import auth, docs

    assert auth.DOCS_PATHS is docs.DOCS_PATHS
