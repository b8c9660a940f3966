"""The admin page `/ui/audit`: the audit trail, newest first, with the filters of
`diagnostics audit` and paging. UIDs and our own identifiers only: the trail holds no patient
names, and the page shows nothing else.

Who may open it is `require_admin`'s one decision. Roles come with issue #14; until then it
accepts any signed-in user, and the page says so.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from diagnostics.api.auth import ACTOR_KEY
from diagnostics.errors import RequestError
from diagnostics.store import AuditEntry, AuditFilter, Store
from diagnostics.store.audit import iso, parse_when

PAGE_SIZE = 50
FIELDS = ("since", "until", "study", "user", "event", "outcome")
DETAIL_CHARS = 200


def require_admin(scope: Mapping[str, Any]) -> bool:
    """Whether this request may read the audit trail: today any signed-in user (the seam for
    the roles of issue #14)."""
    return bool(scope.get(ACTOR_KEY))


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
