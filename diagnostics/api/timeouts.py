"""Request body read timeout as a pure ASGI middleware: a slow client is cut off with a 408.

uvicorn (under BentoML) waits for a request body as long as bytes keep trickling in, so a
client sending one byte every few seconds (slowloris) holds a connection, and a worker's
attention, for as long as it likes. Here each `receive` of the body must arrive before a
deadline that grows with what has arrived: `timeout_s` plus one second per `min_rate` bytes
received. An honest upload on a slow link keeps pace; a trickle does not. Once the deadline
passes, the application's next `receive` raises `RequestTimeoutError` and whatever response it
then starts is replaced by a 408 with `Connection: close`, so the server drops the connection
instead of waiting for the rest of the body.

Not covered, and not coverable from an application: a client that is slow while sending its
request *headers*. uvicorn calls the application only once the headers are complete and has
no header timeout, and BentoML exposes none; a reverse proxy in front of the service
(`client_header_timeout` in nginx) bounds that phase.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from diagnostics.api.routes import route_name
from diagnostics.errors import RequestTimeoutError

log = logging.getLogger(__name__)

Pace = tuple[float, int]
"""(timeout_s, min_rate): seconds allowed for the first bytes, and bytes per second after."""
PaceSource = Pace | Callable[[], Pace | None]


class BodyReadTimeout:
    def __init__(self, app: ASGIApp, *, pace: PaceSource) -> None:
        self.app = app
        self._pace = pace

    def _current(self) -> Pace | None:
        return self._pace if isinstance(self._pace, tuple) else self._pace()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        pace = self._current() if scope["type"] == "http" else None
        if pace is None:
            await self.app(scope, receive, send)
            return
        timeout_s, min_rate = pace
        state = _Reading(anyio.current_time())

        async def paced_receive() -> Message:
            if state.complete:  # the body is in: later receives wait for a disconnect
                return await receive()
            deadline = state.start + timeout_s + state.seen / min_rate
            message: Message | None = None
            with anyio.move_on_after(max(0.0, deadline - anyio.current_time())):
                message = await receive()
            if message is None:
                state.timed_out = True
                raise RequestTimeoutError(_message(state.seen, timeout_s, min_rate))
            if message["type"] == "http.request":
                state.seen += len(message.get("body", b""))
                state.complete = not message.get("more_body", False)
            else:
                state.complete = True
            return message

        async def guarded_send(message: Message) -> None:
            if not state.timed_out:
                state.started |= message["type"] == "http.response.start"
                await send(message)
                return
            if message["type"] == "http.response.start" and not state.started:
                state.started = True
                await _timeout_response(send, state.seen, timeout_s, min_rate)
            # Everything else the application sends after the timeout is dropped.

        try:
            await self.app(scope, paced_receive, guarded_send)
        except RequestTimeoutError:
            if state.started:
                raise
            state.started = True
            await _timeout_response(send, state.seen, timeout_s, min_rate)
        if state.timed_out:
            log.warning(
                "cut off a request to %s sending its body too slowly (%d bytes in time)",
                route_name(scope),
                state.seen,
            )


class _Reading:
    def __init__(self, start: float) -> None:
        self.start = start
        self.seen = 0
        self.complete = False
        self.timed_out = False
        self.started = False


def _message(seen: int, timeout_s: float, min_rate: int) -> str:
    return (
        f"the request body arrived too slowly ({seen} bytes before the deadline): allow "
        f"{timeout_s:g} s plus one second per {min_rate} bytes"
    )


async def _timeout_response(send: Send, seen: int, timeout_s: float, min_rate: int) -> None:
    payload = json.dumps(
        {"error": "RequestTimeoutError", "message": _message(seen, timeout_s, min_rate)}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 408,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
