"""Request size limit as a pure ASGI middleware: 413 before a large body is buffered.

A declared Content-Length over the limit is refused before the application runs. A body sent
without one (chunked) is counted as it streams: once it passes the limit, the application's
next `receive` raises `BodyTooLargeError`, and whatever response the application then starts
(its own 413, or a 500 from a framework that catches everything) is replaced by a 413.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from diagnostics.api.routes import route_name
from diagnostics.errors import TooLargeError

log = logging.getLogger(__name__)

LimitSource = int | Callable[[], int | None]


class BodyTooLargeError(TooLargeError):
    """The request body passed the configured size limit while it streamed in."""


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: LimitSource) -> None:
        self.app = app
        self._max_bytes = max_bytes

    def _limit(self) -> int | None:
        return self._max_bytes if isinstance(self._max_bytes, int) else self._max_bytes()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = self._limit() if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > limit:
            log.warning(
                "refused a %d-byte request to %s (limit %d)", declared, route_name(scope), limit
            )
            await _too_large(send, limit)
            return
        state = _Stream(limit)

        async def counted_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                state.seen += len(message.get("body", b""))
                if state.seen > limit:
                    state.exceeded = True
                    raise BodyTooLargeError(_message(limit))
            return message

        async def guarded_send(message: Message) -> None:
            if not state.exceeded:
                state.started |= message["type"] == "http.response.start"
                await send(message)
                return
            if message["type"] == "http.response.start" and not state.started:
                state.started = state.replaced = True
                await _too_large(send, limit)
            # Everything else the application sends after the limit is dropped.

        try:
            await self.app(scope, counted_receive, guarded_send)
        except BodyTooLargeError:
            if not state.started:
                state.started = state.replaced = True
                await _too_large(send, limit)
            elif not state.replaced:
                raise
        if state.exceeded:
            log.warning("refused a streamed request to %s over %d bytes", route_name(scope), limit)


class _Stream:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seen = 0
        self.exceeded = False
        self.started = False
        self.replaced = False


def _message(limit: int) -> str:
    return (
        f"the request body is larger than the limit of {limit} bytes; send fewer instances per "
        "request (or raise DIAGNOSTICS_MAX_REQUEST_BYTES)"
    )


def _content_length(scope: Scope) -> int | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _too_large(send: Send, limit: int) -> None:
    payload = json.dumps({"error": "BodyTooLargeError", "message": _message(limit)}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
