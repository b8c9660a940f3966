"""The HTTP routes BentoML's typed API cannot express (raw DICOM bodies, multipart/related,
GET with path and query parameters), as an ASGI app the service mounts.

It is a FastAPI app only so that BentoML's OpenAPI page lists these routes beside its own
(`diagnostics.api.openapi`); the handlers read the raw request themselves.

Routes: `POST /v1/screen`, `POST /dicomweb/studies` (STOW-RS), `GET /v1/studies/{study_uid}`,
`GET /v1/studies/{study_uid}/fhir`, `GET /v1/worklist`, `GET /metrics` (Prometheus; BentoML's
own is switched off, `diagnostics.api.metrics`), and whatever the service adds (the review
UI). Authentication and the size limit are middleware around the whole service
(`diagnostics.api.auth`, `diagnostics.api.limits`); the actor they record is read from the
request scope.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Sequence
from http import HTTPStatus

import anyio.to_thread
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute

from diagnostics.api.auth import actor_of
from diagnostics.api.endpoints import (
    Reply,
    error_reply,
    not_ready,
    screen_upload,
    store_upload,
    study_reply,
    worklist_reply,
)
from diagnostics.api.errors import JsonErrors
from diagnostics.api.fhir import fhir_reply
from diagnostics.api.metrics import CONTENT_TYPE, ServiceMetrics, render_metrics
from diagnostics.api.openapi import ROUTE_DOCS, TAG
from diagnostics.errors import DiagnosticsError
from diagnostics.service.runtime import Runtime

log = logging.getLogger(__name__)

RuntimeSource = Callable[[], Runtime | None]
"""Returns the running `Runtime`, or None before it is built."""


def render(reply: Reply) -> Response:
    return Response(
        json.dumps(reply.body, separators=(",", ":")).encode("utf-8"),
        status_code=reply.status,
        media_type=reply.media_type,
        headers=reply.headers,
    )


def create_app(
    runtime: RuntimeSource,
    metrics: Callable[[], ServiceMetrics | None],
    extra_routes: Sequence[BaseRoute] = (),
) -> FastAPI:
    """The app; `runtime` and `metrics` are looked up per request.

    `extra_routes` are mounted beside the API (the review UI under `/ui`), so one app and one
    middleware stack serve both.
    """

    def ready() -> Runtime | None:
        current = runtime()
        return current if current is not None and current.ready else None

    async def read_body(request: Request) -> bytes | Response:
        try:
            return await request.body()
        except DiagnosticsError as exc:  # BodyTooLargeError from the size limit
            return render(error_reply(exc))

    async def run(call: Callable[[], Reply]) -> Response:
        try:
            reply = await anyio.to_thread.run_sync(call)
        except DiagnosticsError as exc:
            log.error("%s: %s", type(exc).__name__, exc)
            reply = error_reply(exc)
        return render(reply)

    async def upload(request: Request, handler: Callable[..., Reply]) -> Response:
        """Both DICOM uploads: `POST /v1/screen` (`screen_upload`) and STOW-RS (`store_upload`)."""
        current = ready()
        if current is None:
            return render(not_ready())
        body = await read_body(request)
        if isinstance(body, Response):
            return body
        call = functools.partial(
            handler,
            current,
            request.headers.get("content-type"),
            body,
            actor_of(request.scope),
            metrics(),
        )
        return await run(call)

    async def screen(request: Request) -> Response:
        return await upload(request, screen_upload)

    async def stow(request: Request) -> Response:
        return await upload(request, store_upload)

    async def study(request: Request) -> Response:
        current = ready()
        if current is None:
            return render(not_ready())
        uid = str(request.path_params["study_uid"])
        call = functools.partial(study_reply, current, uid, actor_of(request.scope))
        return await run(call)

    async def fhir(request: Request) -> Response:
        current = ready()
        if current is None:
            return render(not_ready())
        uid = str(request.path_params["study_uid"])
        return await run(functools.partial(fhir_reply, current, uid, actor_of(request.scope)))

    async def worklist(request: Request) -> Response:
        current = ready()
        if current is None:
            return render(not_ready())
        query = dict(request.query_params)
        call = functools.partial(worklist_reply, current, query, actor_of(request.scope))
        return await run(call)

    async def prometheus(request: Request) -> Response:
        text = await anyio.to_thread.run_sync(render_metrics, runtime())
        return Response(text, media_type=CONTENT_TYPE)

    # No docs of its own: BentoML serves one page for the whole service.
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    for path, handler, methods in (
        ("/v1/screen", screen, ["POST"]),
        ("/dicomweb/studies", stow, ["POST"]),
        ("/v1/studies/{study_uid}", study, ["GET", "HEAD"]),
        ("/v1/studies/{study_uid}/fhir", fhir, ["GET", "HEAD"]),
        ("/v1/worklist", worklist, ["GET", "HEAD"]),
    ):
        app.add_api_route(path, handler, methods=methods, tags=[TAG], **ROUTE_DOCS[path])
    app.add_api_route("/metrics", prometheus, methods=["GET"], include_in_schema=False)
    app.router.routes.extend(extra_routes)
    app.add_exception_handler(HTTPException, http_error)
    # Innermost of the service's middleware: an unexpected exception in a route answers JSON
    # here, before Starlette's plain-text 500 (the service wraps everything in another one).
    app.add_middleware(JsonErrors)
    return app


async def http_error(request: Request, exc: Exception) -> Response:
    """Unknown paths and methods answer like every other error: `{"error", "message"}`."""
    assert isinstance(exc, HTTPException)
    name = HTTPStatus(exc.status_code).phrase.replace(" ", "")
    body = {"error": name, "message": f"{exc.detail}: {request.method} {request.url.path}"}
    return render(Reply(exc.status_code, body, headers=dict(exc.headers or {})))
