"""The admin page `/ui/audit`: the audit trail, newest first, with the filters of
`diagnostics audit` and paging. UIDs and our own identifiers only: the trail holds no patient
names, and the page shows nothing else.

Who may open it is `require_admin`'s one decision: the admin role (`diagnostics.api.auth`
sets each request's role; the users page, `users_page.py`, asks the same).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlencode

import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from diagnostics.api.auth import ACTOR_KEY, actor_of, role_of
from diagnostics.errors import RequestError
from diagnostics.i18n import N_
from diagnostics.service.runtime import Runtime
from diagnostics.store import AuditEntry, AuditFilter, Store
from diagnostics.store.audit import iso, parse_when

PAGE_SIZE = 50
FIELDS = ("since", "until", "study", "user", "event", "outcome")
DETAIL_CHARS = 200


def require_admin(scope: Mapping[str, Any]) -> bool:
    """Whether this request may open the admin pages (audit trail, users): an admin's."""
    return bool(scope.get(ACTOR_KEY)) and role_of(scope) == "admin"


@dataclass(frozen=True)
class AuditRow:
    entry: AuditEntry
    at: str
    detail: str


@dataclass(frozen=True)
class AuditPage:
    rows: list[AuditRow]
    total: int
    page: int
    pages: int
    query: dict[str, str]

    def link(self, page: int) -> str:
        query = {k: v for k, v in self.query.items() if v and k in FIELDS}
        if page > 1:
            query["page"] = str(page)
        return "/ui/audit" + ("?" + urlencode(query) if query else "")


def parse_filter(query: Mapping[str, str]) -> tuple[AuditFilter, int]:
    """The page's query string as a filter and a page number; bad input is a `RequestError`."""
    text = {k: query.get(k, "").strip() for k in FIELDS}
    outcome = text["outcome"] or None
    if outcome not in (None, "success", "failure"):
        raise RequestError("outcome must be success or failure")
    page_text = query.get("page", "1").strip() or "1"
    if not page_text.isdigit() or not 1 <= int(page_text) <= 1_000_000:
        raise RequestError("page must be a whole number from 1")
    where = AuditFilter(
        since=parse_when(text["since"]) if text["since"] else None,
        until=parse_when(text["until"], end=True) if text["until"] else None,
        study=text["study"] or None,
        user=text["user"] or None,
        event=text["event"] or None,
        outcome=outcome,  # type: ignore[arg-type]  # checked just above
    )
    return where, int(page_text)


class UI(Protocol):
    """What the page needs of `diagnostics.ui.app.ReviewUI`."""

    def page(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> Response: ...

    def message(self, request: Request, status: int, title: str, text: str) -> Response: ...

    def runtime(self) -> Runtime | None: ...

    async def audit(self, runtime: Runtime, actor: str, action: str, **detail: object) -> None: ...


def audit_route(ui: UI) -> Route:
    """`GET /ui/audit`, for the review UI's routes."""

    async def audit_trail(request: Request) -> Response:
        runtime = ui.runtime()
        if runtime is None:
            return ui.message(request, 503, N_("Starting"), N_("The service is starting; retry."))
        if not require_admin(request.scope):
            return ui.message(
                request, 403, N_("Not allowed"), N_("The audit trail is for administrators.")
            )
        call = functools.partial(audit_page, runtime.store, dict(request.query_params))
        try:
            page = await anyio.to_thread.run_sync(call)
        except RequestError as exc:
            return ui.message(request, 400, N_("Audit filter not understood"), str(exc))
        # Reading the trail is itself an audited event (ATNA: audit log used).
        await ui.audit(runtime, actor_of(request.scope), "ui_audit_read", count=len(page.rows))
        return ui.page(request, "audit.html", page=page, title=N_("Audit trail"))

    return Route("/audit", audit_trail, methods=["GET"])


def audit_page(store: Store, query: Mapping[str, str]) -> AuditPage:
    where, page = parse_filter(query)
    total, entries = store.audit_page(where, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    rows = []
    for entry in entries:
        detail = json.dumps(entry.detail, sort_keys=True, default=str) if entry.detail else ""
        if len(detail) > DETAIL_CHARS:
            detail = detail[: DETAIL_CHARS - 1] + "…"
        rows.append(AuditRow(entry, iso(entry.at).replace("T", " "), detail))
    pages = max(1, -(-total // PAGE_SIZE))
    shown = {k: query.get(k, "").strip() for k in FIELDS}
    return AuditPage(rows, total, page, pages, shown)
