"""`GET /healthz` with the reason when intake is refused for lack of free disk.

BentoML's own `/healthz` answers an empty 200. An administrator (or a monitor) asking why a
PACS gets 0xA700 should not have to read the log: while the runtime runs, this middleware
answers `/healthz` itself with what the free-disk watermark says. Still 200: the process is
alive and results, the worklist and deliveries go on; only intake waits for room.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from diagnostics.service.runtime import Runtime

PATH = "/healthz"


class IntakeHealth:
    def __init__(self, app: ASGIApp, *, runtime: Callable[[], Runtime | None]) -> None:
        self.app = app
        self._runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        current = self._runtime() if _is_health(scope) else None
        if current is None:
            await self.app(scope, receive, send)
            return
        await JSONResponse(health(current))(scope, receive, send)


def health(runtime: Runtime) -> dict[str, object]:
    """`{"status": "ok", "intake": "accepting" | "refused", ...}` with the disk's numbers."""
    state = runtime.disk.state()
    body: dict[str, object] = {
        "status": "ok",
        "intake": "refused" if state.refused else "accepting",
        "free_disk_bytes": state.free,
        "min_free_disk_bytes": state.floor,
    }
    refusal = runtime.disk.refusal()
    if refusal is not None:
        body["message"] = str(refusal)
    return body


def _is_health(scope: Scope) -> bool:
    return (
        scope["type"] == "http"
        and scope.get("path") == PATH
        and scope.get("method") in ("GET", "HEAD")
    )
