"""Metrics and refusals: labelled by route template, bounded whatever clients send, and cheap.

The stack is the service's (request metrics, JSON errors, authentication around BentoML-like
system routes and the mounted API and review UI), called in-process.
"""

from __future__ import annotations

import logging
import random
import string
import time
from collections.abc import Sequence

import anyio
import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from diagnostics.api.app import create_app
from diagnostics.api.auth import AuthPolicy, BearerAuth
from diagnostics.api.errors import JsonErrors
from diagnostics.api.metrics import ServiceMetrics
from diagnostics.api.refusals import OVERFLOW, RefusalLog
from diagnostics.api.routes import route_template
from diagnostics.api.traffic import RequestMetrics
from diagnostics.errors import StoreError
from diagnostics.ui import create_ui

TOKEN = "metrics-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
Audit = list[tuple[str, str, dict[str, object]]]


async def probe(request: Request) -> PlainTextResponse:
    return PlainTextResponse("\n")


def service(policy: AuthPolicy, metrics: ServiceMetrics) -> Starlette:
    """Like the BentoML service: system routes first, the API and UI mounted at the root."""
    api = create_app(
        lambda: None, lambda: metrics, extra_routes=[create_ui(lambda: None, lambda: policy)]
    )
    return Starlette(
        routes=[
            Route("/readyz", probe),
            Route("/v1/infer", probe, methods=["POST"]),
            Mount("/", api),
        ],
        middleware=[
            Middleware(RequestMetrics, metrics=lambda: metrics),
            Middleware(JsonErrors),
            Middleware(BearerAuth, policy=policy),
        ],
    )


def send(
    app: Starlette, requests: Sequence[tuple[str, str]], headers: dict[str, str] | None = None
) -> list[int]:
    """Many requests over one in-process client; their status codes."""

    async def call() -> list[int]:
        transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return [
                (await client.request(method, path, headers=headers)).status_code
                for method, path in requests
            ]

    return anyio.run(call)


@pytest.fixture
def audit() -> Audit:
    return []


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> ServiceMetrics:
    return ServiceMetrics(registry)


@pytest.fixture
def policy(audit: Audit, metrics: ServiceMetrics) -> AuthPolicy:
    def record(actor: str, action: str, **detail: object) -> None:
        audit.append((actor, action, detail))

    refusals = RefusalLog(record, on_refusal=metrics.count_auth_failure, timer=False)
    return AuthPolicy((TOKEN,), refusals=refusals)


def scrape(registry: CollectorRegistry) -> str:
    return generate_latest(registry).decode()


def random_path(rng: random.Random) -> str:
    words = ["".join(rng.choices(string.ascii_letters, k=rng.randint(1, 12))) for _ in range(3)]
    uid = "1.2.826.0.1.3680043.10." + str(rng.randint(10**9, 10**10))
    shapes = [
        f"/{words[0]}/{words[1]}",
        f"/v1/studies/{uid}",
        f"/v1/studies/{uid}/fhir",
        f"/ui/studies/{uid}/image/{rng.randint(0, 9)}.png",
        f"/{words[2]}%00{words[0]}",
        f"/dicomweb/studies/{uid}/series/{words[1]}",
    ]
    return rng.choice(shapes)


@pytest.mark.parametrize(
    ("method", "path", "template"),
    [
        ("GET", "/v1/studies/1.2.840.99", "/v1/studies/{study_uid}"),
        ("GET", "/v1/studies/1.2.840.99/fhir", "/v1/studies/{study_uid}/fhir"),
        ("POST", "/v1/screen", "/v1/screen"),
        ("GET", "/v1/screen", "/v1/screen"),  # a 405 is still this route's
        ("POST", "/v1/infer", "/v1/infer"),
        ("GET", "/readyz", "/readyz"),
        ("GET", "/ui/studies/1.2.3/image/0.png", "/ui/studies/{uid}/image/{index}.png"),
        ("GET", "/ui/static/ui.css", "/ui/static/{path}"),
        ("GET", "/ui/", "/ui/"),
        ("GET", "/v1/nothing/1.2.840.99", None),
        ("GET", "/ui/nothing", None),
    ],
)
def test_requests_are_named_by_their_route_template(
    policy: AuthPolicy, metrics: ServiceMetrics, method: str, path: str, template: str | None
) -> None:
    app = service(policy, metrics)
    scope = {"type": "http", "method": method, "path": path, "root_path": "", "app": app}
    assert route_template(scope) == template


def test_random_paths_without_a_token_add_no_series_no_log_flood_and_one_audit_row(
    policy: AuthPolicy,
    metrics: ServiceMetrics,
    registry: CollectorRegistry,
    audit: Audit,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = service(policy, metrics)
    send(app, [("GET", "/v1/worklist")], AUTH)  # every series that will exist, once
    before = scrape(registry)
    rng = random.Random(15)
    paths = [random_path(rng) for _ in range(500)]
    with caplog.at_level(logging.INFO):
        statuses = send(app, [(rng.choice(["GET", "POST", "BREW"]), p) for p in paths])
    assert set(statuses) <= {401, 303}  # 303: a browser without a session, sent to sign in
    after = scrape(registry)
    assert abs(len(after) - len(before)) <= 8, "only counter digits may change"
    failures = [ln for ln in after.splitlines() if ln.startswith("diagnostics_auth_failures_total")]
    assert sum(float(line.split()[-1]) for line in failures) == 500
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "httpx")  # the client's
    for path in paths:
        assert path not in after
        assert path not in logged
    assert "1.2.826.0.1.3680043.10." not in after + logged
    assert len([r for r in caplog.records if "authentication failed" in r.getMessage()]) == 1
    assert audit == []  # nothing written per request
    assert policy.refusals is not None
    policy.refusals.close()
    ((actor, action, detail),) = audit
    assert (actor, action, detail["count"]) == ("client:192.0.2.7", "auth_failed", 500)
    reasons = detail["reasons"]
    assert isinstance(reasons, dict) and set(reasons) <= {"missing", "no_session"}
    routes = detail["routes"]
    assert isinstance(routes, dict) and sum(routes.values()) == 500
    assert set(routes) <= {
        "unmatched",
        "/v1/studies/{study_uid}",
        "/v1/studies/{study_uid}/fhir",
        "/ui/studies/{uid}/image/{index}.png",
    }


def test_answered_requests_are_counted_and_logged_by_template(
    policy: AuthPolicy,
    metrics: ServiceMetrics,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = service(policy, metrics)
    uid = "1.2.840.113619.2.55.3.4711"
    with caplog.at_level(logging.INFO, logger="diagnostics.access"):
        statuses = send(app, [("GET", f"/v1/studies/{uid}/fhir"), ("GET", f"/nowhere/{uid}")], AUTH)
    assert statuses == [503, 404]  # no runtime yet; no such route
    text = scrape(registry)
    assert (
        'diagnostics_http_requests_total{method="GET",route="/v1/studies/{study_uid}/fhir",'
        'status="503"} 1.0' in text
    )
    assert "diagnostics_http_unmatched_requests_total 1.0" in text
    assert uid not in text and uid not in caplog.text
    (line,) = [r.getMessage() for r in caplog.records if r.name == "diagnostics.access"]
    assert line.startswith("GET /v1/studies/{study_uid}/fhir 503 ")


def test_the_metrics_route_is_open_and_lists_the_http_counters(
    policy: AuthPolicy, metrics: ServiceMetrics
) -> None:
    app = service(policy, metrics)

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get("/metrics")

    response = anyio.run(call)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")


def test_refusals_are_written_per_source_and_minute() -> None:
    rows: Audit = []
    now = [120.0]
    log = RefusalLog(
        lambda a, b, **d: rows.append((a, b, d)), clock=lambda: now[0], max_sources=2, timer=False
    )
    for source in ("client:a", "client:a", "client:b", "client:c", "client:d"):
        log.refused(source, "invalid_token", "GET", "/v1/worklist")
    assert not log.due() and log.flush() == 0 and rows == []
    now[0] = 185.0  # the next minute: the first is over
    assert log.due()
    log.refused("client:a", "missing", "POST", "unmatched")
    assert log.flush() == 3
    counts = {actor: detail["count"] for actor, _, detail in rows}
    assert counts == {"client:a": 2, "client:b": 1, OVERFLOW: 2}  # c and d past the bound
    assert {str(d["minute"]) for _, _, d in rows} == {"1970-01-01T00:02:00Z"}
    log.close()  # the current minute too
    assert rows[-1][0] == "client:a" and rows[-1][2]["reasons"] == {"missing": 1}


def test_refusal_audit_errors_are_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise StoreError("database is locked")

    log = RefusalLog(broken, timer=False)
    log.refused("client:a", "missing", "GET", "unmatched")
    with caplog.at_level(logging.ERROR):
        log.close()
    assert "could not audit 1 authentication failures" in caplog.text


def test_the_timer_writes_a_quiet_minute() -> None:
    rows: Audit = []
    log = RefusalLog(lambda a, b, **d: rows.append((a, b, d)), window_s=0.2)
    log.refused("client:a", "missing", "GET", "unmatched")
    end = time.monotonic() + 5  # written 1 s after its window ends, with no request to do it
    while not rows and time.monotonic() < end:
        time.sleep(0.05)
    assert [r[2]["count"] for r in rows] == [1]
    log.close()
