"""Worklist priority: who may raise a study's priority, when waiting escalates it, and the SQL
that pages through 10,000 studies in that order without sorting them.

A study has up to two priorities. The *requested* one comes from the PACS (the C-STORE
request's Priority) or from a person in the review UI: `stat`, `urgent` or `routine`. The
*model's* one is `urgent` when anything is flagged. The effective priority is the higher of
the two, so the model may raise a study but never lowers what a PACS or a person asked for.

Flagged studies must not starve the rest: a routine study that nobody has read and that has
waited longer than the escalation limit is shown as `escalated` and sorted with the urgent
ones (by time waiting), so an old routine study eventually overtakes newer flagged ones.

Order: stat, then urgent and escalated together, then routine; within each, the longest
waiting first. Escalation depends on the clock, so it cannot live in an index; instead each
group is an index range (`studies_priority` on the base rank and `first_received`), and the
urgent group merges two such ranges. SQLite then reads pages in index order and never sorts.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

RequestedPriority = Literal["stat", "urgent", "routine"]
EffectivePriority = Literal["stat", "urgent", "escalated", "routine"]
REQUESTED_PRIORITIES: tuple[RequestedPriority, ...] = ("stat", "urgent", "routine")

RANK_SQL = (
    "(CASE WHEN requested_priority = 'stat' THEN 0 "
    "WHEN requested_priority = 'urgent' OR priority = 'urgent' THEN 1 ELSE 2 END)"
)
"""The base rank (0 stat, 1 urgent, 2 routine) without escalation. The text must be the same
as in the `studies_priority` index, or SQLite will not use the index for it."""

INDEX_SQL = f"CREATE INDEX IF NOT EXISTS studies_priority ON studies ({RANK_SQL}, first_received)"

DIMSE_HIGH = 1
"""C-STORE Priority: 0 MEDIUM, 1 HIGH, 2 LOW (PS3.7 9.3.1.1)."""


def from_dimse(priority: int | None) -> RequestedPriority | None:
    """The priority a C-STORE request asks for: HIGH means urgent; MEDIUM (what nearly every
    sender sends) and LOW ask for nothing, so they never lower anything."""
    return "urgent" if priority == DIMSE_HIGH else None


def base_rank(requested: str | None, model: str | None) -> int:
    """0 stat, 1 urgent, 2 routine: the higher of the requested and the model's priority."""
    if requested == "stat":
        return 0
    if requested == "urgent" or model == "urgent":
        return 1
    return 2


def escalated(
    rank: int,
    first_received: float,
    reviewed_at: float | None,
    now: float,
    escalate_after_s: float,
) -> bool:
    """A routine study nobody has read that has waited longer than the limit."""
    return rank == 2 and reviewed_at is None and first_received < now - escalate_after_s


def effective_priority(
    requested: str | None,
    model: str | None,
    first_received: float,
    reviewed_at: float | None,
    now: float,
    escalate_after_s: float,
) -> EffectivePriority:
    rank = base_rank(requested, model)
    if escalated(rank, first_received, reviewed_at, now, escalate_after_s):
        return "escalated"
    return ("stat", "urgent", "routine")[rank]


def sort_key(
    requested: str | None,
    model: str | None,
    first_received: float,
    reviewed_at: float | None,
    now: float,
    escalate_after_s: float,
) -> tuple[int, float]:
    """The worklist order in Python: what the SQL below must agree with (tests compare them)."""
    rank = base_rank(requested, model)
    if escalated(rank, first_received, reviewed_at, now, escalate_after_s):
        rank = 1
    return rank, first_received


@dataclass(frozen=True)
class WorklistFilter:
    """What the worklist shows; every field None shows every study."""

    status: str | None = None
    """A result status (`analyzed`, `not_analyzed`, `failed`) or `pending` (no result yet)."""
    finding: str | None = None
    """Keep studies with this finding flagged."""
    received_from: float | None = None
    """First instance received at or after this time (epoch seconds)."""
    received_before: float | None = None
    read: bool | None = None
    """True: only studies marked read; False: only unread ones."""

    def clause(self) -> tuple[str, list[object]]:
        """`AND ...` conditions and their parameters, to add to each group's WHERE."""
        where: list[str] = []
        params: list[object] = []
        if self.status == "pending":
            where.append("status IS NULL")
        elif self.status is not None:
            where.append("status = ?")
            params.append(self.status)
        if self.finding is not None:
            where.append("instr(',' || flagged || ',', ',' || ? || ',') > 0")
            params.append(self.finding)
        if self.received_from is not None:
            where.append("first_received >= ?")
            params.append(self.received_from)
        if self.received_before is not None:
            where.append("first_received < ?")
            params.append(self.received_before)
        if self.read is not None:
            where.append("reviewed_at IS NOT NULL" if self.read else "reviewed_at IS NULL")
        return "".join(f" AND {w}" for w in where), params


COLUMNS = (
    "study_instance_uid, state, status, priority, requested_priority, flagged, first_received, "
    "last_received, version, reviewed_at"
)


def _groups(cutoff: float) -> list[list[tuple[str, list[object]]]]:
    """Each display group as the index ranges it merges: (condition, parameters)."""
    return [
        [(f"{RANK_SQL} = 0", [])],
        [
            (f"{RANK_SQL} = 1", []),
            (f"{RANK_SQL} = 2 AND first_received < ? AND reviewed_at IS NULL", [cutoff]),
        ],
        [(f"{RANK_SQL} = 2 AND (first_received >= ? OR reviewed_at IS NOT NULL)", [cutoff])],
    ]


def group_query(
    arms: Sequence[tuple[str, list[object]]], extra: str, extra_params: Sequence[object]
) -> tuple[str, list[object]]:
    """One group's rows in waiting order: one index range, or a merge of two.

    The ORDER BY is `first_received` alone: a tie-breaker column would make SQLite sort each
    side in a temporary B-tree. Ties fall back to index (rowid) order, which is stable.
    """
    selects: list[str] = []
    params: list[object] = []
    for condition, arm_params in arms:
        selects.append(f"SELECT {COLUMNS} FROM studies WHERE {condition}{extra}")
        params += [*arm_params, *extra_params]
    return " UNION ALL ".join(selects) + " ORDER BY first_received LIMIT ? OFFSET ?", params


def worklist_page(
    db: sqlite3.Connection,
    where: WorklistFilter,
    *,
    now: float,
    escalate_after_s: float,
    limit: int,
    offset: int,
) -> tuple[int, list[sqlite3.Row]]:
    """One page of the worklist in priority order, and how many studies match in all."""
    extra, extra_params = where.clause()
    groups = _groups(now - escalate_after_s)
    counts = []
    for arms in groups:
        n = 0
        for condition, arm_params in arms:
            row = db.execute(
                f"SELECT COUNT(*) FROM studies WHERE {condition}{extra}",
                [*arm_params, *extra_params],
            ).fetchone()
            n += int(row[0])
        counts.append(n)
    rows: list[sqlite3.Row] = []
    skip = offset
    for arms, count in zip(groups, counts, strict=True):
        if len(rows) >= limit:
            break
        if skip >= count:
            skip -= count
            continue
        query, params = group_query(arms, extra, extra_params)
        rows += db.execute(query, [*params, limit - len(rows), skip]).fetchall()
        skip = 0
    return sum(counts), rows
