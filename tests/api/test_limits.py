"""Request size limit: 413 up front for a declared length, and while streaming without one."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from diagnostics.api.limits import BodySizeLimit
from tests.helpers.asgi import asgi_request

LIMIT = 4096


async def echo(request: Request) -> Response:
    return JSONResponse({"size": len(await request.body())})


async def swallow(request: Request) -> Response:
    """A framework that turns every exception into a 500 (as BentoML's API wrapper does)."""
    try:
        await request.body()
    except Exception:  # noqa: BLE001 - imitating a catch-all framework
        return JSONResponse({"error": "internal"}, status_code=500)
    return JSONResponse({})


APP = Starlette(
    routes=[Route("/echo", echo, methods=["POST"]), Route("/swallow", swallow, methods=["POST"])]
)
LIMITED = BodySizeLimit(APP, max_bytes=LIMIT)


def post(path: str, content: bytes | Iterator[bytes], app: object = LIMITED) -> httpx.Response:
    return asgi_request(app, "POST", path, content=content)  # type: ignore[arg-type]


def chunks(total: int, size: int = 1000) -> Iterator[bytes]:
    for start in range(0, total, size):
        yield b"\0" * min(size, total - start)


def test_under_the_limit_passes() -> None:
    assert post("/echo", b"x" * LIMIT).json() == {"size": LIMIT}
    assert post("/echo", chunks(LIMIT)).json() == {"size": LIMIT}


def test_declared_length_over_the_limit_is_413_before_the_app_runs() -> None:
    response = post("/echo", b"x" * (LIMIT + 1))
    assert response.status_code == 413
    assert f"limit of {LIMIT} bytes" in response.json()["message"]


def test_streamed_body_over_the_limit_is_413() -> None:
    assert post("/echo", chunks(LIMIT * 3)).status_code == 413


def test_a_catch_all_500_is_replaced_by_413() -> None:
    response = post("/swallow", chunks(LIMIT * 3))
    assert response.status_code == 413
    assert response.json()["error"] == "BodyTooLargeError"


def test_a_limit_source_returning_none_means_no_limit() -> None:
    unlimited = BodySizeLimit(APP, max_bytes=lambda: None)
    assert post("/echo", b"x" * (LIMIT * 10), unlimited).json() == {"size": LIMIT * 10}
