"""The audit trail's records: entries after IHE ATNA / RFC 3881, filters, the chain's verdict.

An entry answers who (`actor`: `token:<sha6>`, `dimse:<calling AE>`, `client:<address>`, a
worker's name), what (`action`, the event, and the object: `study_instance_uid`,
`sop_instance_uid`), when (`at`), where from (`address`, the peer's network address) and with
what outcome (`outcome`, RFC 3881's EventOutcomeIndicator: 0 success, 4 minor failure, 8
serious failure, 12 major failure). Whatever else an event says stays in `detail`. Each row
also stores a SHA-256 chained over the row before it (`diagnostics.store.sqlite.audit`), so a
row altered, deleted or inserted afterwards is found by `diagnostics audit --verify`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from diagnostics.errors import RequestError

SUCCESS = 0
MINOR_FAILURE = 4
SERIOUS_FAILURE = 8
MAJOR_FAILURE = 12
OUTCOMES = {
    SUCCESS: "success",
    MINOR_FAILURE: "minor failure",
    SERIOUS_FAILURE: "serious failure",
    MAJOR_FAILURE: "major failure",
}
"""RFC 3881 EventOutcomeIndicator codes and their names."""

REFUSALS = ("_refused", "_rejected", "auth_failed", "sign_in_failed")
"""Action endings of a request we refused: the requester failed (minor failure)."""


def outcome_of(action: str) -> int:
    """The outcome an action implies when its caller names none: callers stay one-liners.

    A refusal (`instance_refused`, `association_rejected`, `auth_failed`) is a minor failure;
    any other `*_failed` is our own work failing (serious); everything else succeeded.
    """
    if action.endswith(REFUSALS):
        return MINOR_FAILURE
    if action.endswith("_failed"):
        return SERIOUS_FAILURE
    return SUCCESS


AGO = re.compile(r"(\d+)\s*([smhdw])")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_when(text: str, *, end: bool = False, now: float | None = None) -> float:
    """A filter bound: `7d`/`12h`/`30m`/`2w` ago, or an ISO date or date-time (UTC unless it
    names its zone). A bare date as an end (`end=True`) means the end of that day."""
    text = text.strip()
    ago = AGO.fullmatch(text)
    if ago:
        now = time.time() if now is None else now
        return now - int(ago[1]) * UNITS[ago[2]]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise RequestError(
            f"{text[:40]!r} is not a time: use an ISO date (2026-12-01), a date-time "
            "(2026-12-01T08:30, UTC unless it names its zone) or an age such as 7d, 12h, 30m"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    bare_date = len(text) <= 10
    return moment.timestamp() + (86400 if end and bare_date else 0)


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds")


@dataclass(frozen=True)
class AuditEntry:
    """One row of the audit trail (UIDs and our own identifiers only, never patient data)."""

    id: int
    at: float
    actor: str
    action: str
    study_instance_uid: str | None
    sop_instance_uid: str | None
    address: str | None
    outcome: int
    detail: dict[str, object]
    hash: str | None

    @property
    def outcome_name(self) -> str:
        return OUTCOMES.get(self.outcome, f"code {self.outcome}")

    def as_dict(self) -> dict[str, object]:
        """For JSON and CSV: `at` in ISO 8601 UTC, the outcome by code and by name."""
        return {
            "id": self.id,
            "at": iso(self.at),
            "actor": self.actor,
            "action": self.action,
            "study_instance_uid": self.study_instance_uid,
            "sop_instance_uid": self.sop_instance_uid,
            "address": self.address,
            "outcome": self.outcome,
            "outcome_name": self.outcome_name,
            "detail": self.detail,
            "hash": self.hash,
        }

    def legacy_dict(self) -> dict[str, object]:
        """What `Store.audit_entries` returned before the columns: `detail` holds every keyword
        the caller passed (`study`, `sop`, `address` included)."""
        detail = dict(self.detail)
        for key, value in (
            ("study", self.study_instance_uid),
            ("sop", self.sop_instance_uid),
            ("address", self.address),
        ):
            if value is not None:
                detail[key] = value
        return {
            "id": self.id,
            "at": self.at,
            "actor": self.actor,
            "action": self.action,
            "outcome": self.outcome,
            "detail": detail,
        }

    def text(self) -> str:
        """One line for people: when, who, what, on what, from where, outcome, the rest."""
        parts = [iso(self.at), f"#{self.id}", self.actor, self.action, self.outcome_name]
        if self.study_instance_uid:
            parts.append(f"study={self.study_instance_uid}")
        if self.sop_instance_uid:
            parts.append(f"sop={self.sop_instance_uid}")
        if self.address:
            parts.append(f"from={self.address}")
        if self.detail:
            parts.append(json.dumps(self.detail, sort_keys=True, default=str))
        return " ".join(parts)


@dataclass(frozen=True)
class AuditFilter:
    """The filters the command and the admin page share; None: no filter."""

    since: float | None = None
    until: float | None = None
    """Exclusive."""
    study: str | None = None
    user: str | None = None
    """An actor exactly (`token:ab12cd`) or its name after the kind (`ORTHANC`)."""
    event: str | None = None
    outcome: Literal["success", "failure"] | None = None


Problem = Literal["altered", "deleted", "inserted"]


@dataclass(frozen=True)
class ChainReport:
    """What `verify` found: intact, or the first row where the chain breaks and how."""

    rows: int
    first_id: int | None
    last_id: int | None
    head: str | None
    """The newest row's hash: record it elsewhere to detect a rewritten tail later."""
    problem: Problem | None = None
    problem_id: int | None = None
    message: str = ""
    checked: int = field(default=0)
    """Rows verified before the first problem."""

    @property
    def ok(self) -> bool:
        return self.problem is None

    def as_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "rows": self.rows,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "head": self.head,
            "problem": self.problem,
            "problem_id": self.problem_id,
            "checked": self.checked,
            "message": self.message,
        }
