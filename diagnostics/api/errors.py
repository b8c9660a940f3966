"""Every error response is JSON: `{"error": <class>, "message": <text>}`.

`JsonErrors` wraps the whole service. An exception nothing else handled becomes a 500
`InternalError` (its traceback logged once, without its message, which may quote patient data),
instead of a plain-text "Internal Server Error"; and error bodies written by others (BentoML's
`/v1/infer` validation errors, Starlette's defaults) are rewritten into the same shape, so a
client parses one format. HTML error pages (the review UI's) and STOW-RS's DICOM JSON are left
alone.
"""

from __future__ import annotations

import json
import logging
import traceback
from http import HTTPStatus

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from diagnostics.api.routes import method_label, route_name

log = logging.getLogger(__name__)

INTERNAL: dict[str, object] = {
    "error": "InternalError",
    "message": (
        "an unexpected error occurred while handling the request; the service log has the "
        "details. Retry later, and report it if it persists"
    ),
}


REWRITTEN = (b"", b"text/plain", b"application/json")
"""Error bodies of these types are brought into our shape; others are left alone: HTML pages
(the review UI's) and STOW-RS's DICOM JSON failure lists are what their clients expect."""


def error_name(status: int) -> str:
    """`InternalError` for 500, otherwise the status phrase as a name (`BadRequest`)."""
    if status == 500:
        return "InternalError"
    try:
        return HTTPStatus(status).phrase.replace(" ", "").replace("-", "")
    except ValueError:
        return f"Http{status}"


def normalise(status: int, body: bytes) -> dict[str, object] | None:
    """The error body in our shape, or None when it already has it."""
    try:
        data: object = json.loads(body) if body else None
    except ValueError:
        data = None
    if isinstance(data, list) and len(data) == 1:  # BentoML wraps some errors in a list
        data = data[0]
    if isinstance(data, dict) and isinstance(data.get("error"), str) and "message" in data:
        return None
    if isinstance(data, dict):
        message = str(data.get("error") or "")
        detail = data.get("detail")
        if isinstance(detail, list):  # pydantic's validation errors, as BentoML passes them
            found = [str(d.get("msg")) for d in detail if isinstance(d, dict) and d.get("msg")]
            message = ": ".join(filter(None, [message, "; ".join(found)]))
        elif detail:
            message = message or str(detail)
        extra = {k: v for k, v in data.items() if k not in ("error", "message")}
    else:
        message = body.decode("utf-8", "replace").strip()[:500] if data is None else str(data)
        extra = {}
    if status >= 500:
        return {**INTERNAL, "error": error_name(status)}
    return {"error": error_name(status), "message": message or error_name(status), **extra}


def _traceback(exc: BaseException) -> str:
    """The frames only: an exception's message may quote header values (patient data)."""
    return "".join(traceback.format_tb(exc.__traceback__)).rstrip()


class JsonErrors:
    """ASGI middleware: the last-resort handler and the error-body rewriter (module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False
        held: Message | None = None
        chunks: list[bytes] = []

        async def watch(message: Message) -> None:
            nonlocal started, held
            if message["type"] == "http.response.start" and not started:
                if _rewritable(scope, message):
                    held = message
                    return
                started = True
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                start, held = held, None
                started = True
                await _send_error(send, start, b"".join(chunks))
                return
            await send(message)

        try:
            await self.app(scope, receive, watch)
        # The last resort, an ASGI app's top level; logged below without the message.
        except Exception as exc:  # noqa: BLE001
            log.error(
                "unexpected %s on %s %s (message withheld: it may quote patient data)\n%s",
                type(exc).__name__,
                method_label(scope),
                route_name(scope),  # never the raw path: it may carry a study's UID
                _traceback(exc),
            )
            if not started:
                await _send_json(send, 500, INTERNAL, [])


def _rewritable(scope: Scope, start: Message) -> bool:
    if int(start["status"]) < 400 or scope.get("method") == "HEAD":
        return False
    headers = {k.lower(): v for k, v in start.get("headers", [])}
    kind = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
    return kind in REWRITTEN


async def _send_error(send: Send, start: Message, body: bytes) -> None:
    status = int(start["status"])
    fixed = normalise(status, body)
    if fixed is None:
        await send(start)
        await send({"type": "http.response.body", "body": body})
        return
    kept = [
        (k, v)
        for k, v in start.get("headers", [])
        if k.lower() not in (b"content-type", b"content-length")
    ]
    await _send_json(send, status, fixed, kept)


async def _send_json(
    send: Send, status: int, body: dict[str, object], headers: list[tuple[bytes, bytes]]
) -> None:
    data = json.dumps(body, separators=(",", ":"), default=str).encode("utf-8")
    headers = [
        *headers,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(data)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": data})
