"""The service's own API page: `/docs` (HTML), `/docs.json` (the OpenAPI document), `/` (to
`/docs`).

BentoML's page at `/` is Swagger UI, which loads Google Tag Manager from the internet and
needs a bearer header a browser cannot send. This page is rendered here, on the server, from
the OpenAPI document BentoML builds for the whole service (its `/v1/infer` and our routes,
`diagnostics.api.openapi`): no script, no outside asset, nothing fetched after the page itself
(its Content-Security-Policy forbids it). It is read with a bearer token or the review UI's
session cookie (`diagnostics.api.auth`), like the UI.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping
from typing import Any

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

Spec = Mapping[str, Any]
SpecSource = Callable[[], Spec | None]
"""Returns the service's OpenAPI document, or None before the service is built."""

DOCS_PATHS: frozenset[str] = frozenset({"/", "/docs", "/docs.json"})
"""The API page's paths, the one definition: `diagnostics.api.auth` lets them be read with a
token or the UI's session cookie."""
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
METHODS = ("get", "head", "post", "put", "patch", "delete")
STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:70rem;padding:1rem 2rem;
color:#1d232a}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ccd}
section.op{border:1px solid #ccd;border-radius:6px;margin:1rem 0;padding:.5rem 1rem}
.method{display:inline-block;min-width:4rem;font-weight:700;text-transform:uppercase}
code,pre{font:13px/1.35 ui-monospace,monospace;background:#f3f4f7}
pre{padding:.6rem;overflow-x:auto;max-height:30rem}
table{border-collapse:collapse}td,th{border:1px solid #dde;padding:.2rem .5rem;text-align:left}
nav a{margin-right:1rem}
"""


def docs_routes(spec: SpecSource) -> list[BaseRoute]:
    """The three routes; mounted before BentoML's own `/` and `/docs.json`, so they win."""

    async def document() -> Spec | None:
        return await anyio.to_thread.run_sync(spec)

    async def page(request: Request) -> Response:
        current = await document()
        if current is None:
            return _not_ready()
        body = render_page(current)
        return Response(body, media_type="text/html; charset=utf-8", headers=HEADERS)

    async def openapi(request: Request) -> Response:
        current = await document()
        if current is None:
            return _not_ready()
        return JSONResponse(dict(current), headers={"Cache-Control": "no-store"})

    async def home(request: Request) -> Response:
        return RedirectResponse("/docs", status_code=307)

    return [
        Route("/", home, methods=["GET", "HEAD"]),
        Route("/docs", page, methods=["GET", "HEAD"]),
        Route("/docs.json", openapi, methods=["GET", "HEAD"]),
    ]


def _not_ready() -> Response:
    body = {"error": "NotReady", "message": "the service is starting; retry shortly"}
    return JSONResponse(body, status_code=503, headers={"Retry-After": "2"})


def render_page(spec: Spec) -> str:
    """The whole page, from the document alone (so it cannot drift from `/docs.json`)."""
    info = spec.get("info", {})
    title = f"{info.get('title', 'diagnostics')} {info.get('version', '')}".strip()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}: API</title><style>{STYLE}</style></head><body>",
        f"<h1>{_e(title)}: HTTP API</h1>",
        '<nav><a href="/docs.json">OpenAPI document (JSON)</a><a href="/ui/">Worklist</a></nav>',
        "<p>Every route but <code>/healthz</code>, <code>/livez</code>, <code>/readyz</code> and "
        "<code>/metrics</code> needs <code>Authorization: Bearer &lt;token&gt;</code> (a token "
        "from <code>DIAGNOSTICS_API_TOKEN</code> or its file). Errors answer "
        '<code>{"error", "message"}</code>.</p>',
    ]
    description = info.get("description")
    if description:
        parts.append(f"<p>{_e(str(description))}</p>")
    for path, item in sorted(spec.get("paths", {}).items()):
        for method in METHODS:
            operation = item.get(method)
            if isinstance(operation, Mapping):
                parts.append(_operation(path, method, operation))
    schemas = spec.get("components", {}).get("schemas", {})
    if schemas:
        parts.append("<h2>Schemas</h2>")
        for name, schema in sorted(schemas.items()):
            parts.append(f'<details id="schema-{_e(name)}"><summary><code>{_e(name)}</code>')
            parts.append(f"</summary><pre>{_e(json.dumps(schema, indent=2))}</pre></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _operation(path: str, method: str, operation: Mapping[str, Any]) -> str:
    parts = [
        '<section class="op">',
        f'<h3><span class="method">{_e(method)}</span> <code>{_e(path)}</code></h3>',
    ]
    for key in ("summary", "description"):
        if operation.get(key):
            parts.append(f"<p>{_e(str(operation[key]))}</p>")
    parameters = operation.get("parameters") or []
    if parameters:
        parts.append("<table><tr><th>parameter</th><th>in</th><th>schema</th><th></th></tr>")
        for parameter in parameters:
            parts.append(
                f"<tr><td><code>{_e(str(parameter.get('name', '')))}</code></td>"
                f"<td>{_e(str(parameter.get('in', '')))}</td>"
                f"<td><code>{_e(json.dumps(parameter.get('schema', {})))}</code></td>"
                f"<td>{_e(str(parameter.get('description', '')))}</td></tr>"
            )
        parts.append("</table>")
    body = operation.get("requestBody") or {}
    if body.get("content"):
        types = ", ".join(f"<code>{_e(t)}</code>" for t in body["content"])
        parts.append(f"<p>Request body: {types}</p>")
    responses = operation.get("responses") or {}
    if responses:
        parts.append("<table><tr><th>status</th><th>meaning</th><th>body</th></tr>")
        for status, response in sorted(responses.items()):
            content = response.get("content") or {}
            shapes = ", ".join(_shape(t, c) for t, c in content.items())
            parts.append(
                f"<tr><td>{_e(str(status))}</td><td>{_e(str(response.get('description', '')))}"
                f"</td><td>{shapes}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</section>")
    return "\n".join(parts)


def _shape(media_type: str, content: Mapping[str, Any]) -> str:
    schema = content.get("schema") or {}
    ref = schema.get("$ref") if isinstance(schema, Mapping) else None
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        return f'<code>{_e(media_type)}</code> <a href="#schema-{_e(name)}">{_e(name)}</a>'
    return f"<code>{_e(media_type)}</code>"


def _e(text: str) -> str:
    return html.escape(text, quote=True)
