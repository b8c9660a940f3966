"""Call an ASGI app in-process (httpx's ASGI transport; Starlette's TestClient is deprecated)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping

import anyio
import httpx
from starlette.types import ASGIApp


def asgi_request(
    app: ASGIApp,
    method: str,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    content: bytes | Iterable[bytes] | None = None,
) -> httpx.Response:
    """One request; an iterable body is streamed in chunks without a Content-Length."""

    async def stream(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def call() -> httpx.Response:
        body = content if content is None or isinstance(content, bytes) else stream(content)
        transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 4321))
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, headers=headers, content=body)

    return anyio.run(call)
