"""Requests counted and logged by route template: the service's access log and HTTP metrics.

BentoML's own HTTP metrics and access log name each request by its raw path: one series per
path a client probes (a scrape grew to 176 MB), and Study Instance UIDs in labels and log lines.
Both are switched off in the service; this middleware, the outermost, replaces them. A request
is counted and logged under its route template (`diagnostics.api.routes`) once answered. A
request authentication refused is left to `diagnostics.api.refusals` (counted and audited per
source and minute), and one that no route serves adds to a single counter: neither gets a
series or a log line of its own, so a flood of them costs neither memory nor log volume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from diagnostics.api.auth import REFUSED_KEY, client_actor
from diagnostics.api.metrics import ServiceMetrics
from diagnostics.api.routes import method_label, route_template

log = logging.getLogger("diagnostics.access")

QUIET_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/metrics"})
"""Probes and scrapes, polled every few seconds: neither counted nor logged."""
REFUSED_STATUSES = frozenset({401, 403})


class RequestMetrics:
    """ASGI middleware: per-template request counts, durations and access-log lines."""

    def __init__(self, app: ASGIApp, *, metrics: Callable[[], ServiceMetrics | None]) -> None:
        self.app = app
        self._metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in QUIET_PATHS:
            await self.app(scope, receive, send)
            return
        route = route_template(scope)
        started = time.perf_counter()
        status = 500  # what the client gets if the app ends without answering

        async def watch(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            self._record(scope, route, status, time.perf_counter() - started)

    def _record(self, scope: Scope, route: str | None, status: int, seconds: float) -> None:
        if scope.get(REFUSED_KEY) or status in REFUSED_STATUSES:
            return
        metrics = self._metrics()
        if route is None:
            if metrics is not None:
                metrics.unmatched.inc()
            return
        method = method_label(scope)
        if metrics is not None:
            metrics.observe_request(route, method, status, seconds)
        log.info("%s %s %d %.3f s from %s", method, route, status, seconds, client_actor(scope))
