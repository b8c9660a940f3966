"""The worklist in SQL: each priority group an index range, so pages never sort.

The order itself is `diagnostics.store.priority` (tests compare the two). Escalation depends on
the clock, so it cannot live in an index; instead each group is an index range
(`studies_priority` on the base rank and `first_received`), and the urgent group merges two
such ranges. SQLite then reads pages in index order and never sorts.
"""

from __future__ import annotations

from collections.abc import Sequence

from diagnostics.store.priority import WorklistFilter, effective_priority
from diagnostics.store.records import WorklistRow
from diagnostics.store.sql import Connection, Row
from diagnostics.store.sqlite.headers import search_clause

RANK_SQL = (
    "(CASE WHEN requested_priority = 'stat' THEN 0 "
    "WHEN requested_priority = 'urgent' OR priority = 'urgent' THEN 1 ELSE 2 END)"
)
"""The base rank (0 stat, 1 urgent, 2 routine) without escalation. The text must be the same
as in the `studies_priority` index, or SQLite will not use the index for it."""

INDEX_SQL = f"CREATE INDEX IF NOT EXISTS studies_priority ON studies ({RANK_SQL}, first_received)"


def clause(wanted: WorklistFilter) -> tuple[str, list[object]]:
    """`AND ...` conditions and their parameters, to add to each group's WHERE."""
    conditions: list[str] = []
    params: list[object] = []
    if wanted.status == "pending":
        conditions.append("status IS NULL")
    elif wanted.status is not None:
        conditions.append("status = ?")
        params.append(wanted.status)
    if wanted.finding is not None:
        conditions.append("instr(',' || flagged || ',', ',' || ? || ',') > 0")
        params.append(wanted.finding)
    if wanted.received_from is not None:
        conditions.append("first_received >= ?")
        params.append(wanted.received_from)
    if wanted.received_before is not None:
        conditions.append("first_received < ?")
        params.append(wanted.received_before)
    if wanted.read is not None:
        conditions.append("reviewed_at IS NOT NULL" if wanted.read else "reviewed_at IS NULL")
    if wanted.search:
        condition, search_params = search_clause(wanted.search)
        conditions.append(condition)
        params += search_params
    return "".join(f" AND {w}" for w in conditions), params


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
    db: Connection,
    where: WorklistFilter,
    *,
    now: float,
    escalate_after_s: float,
    limit: int,
    offset: int,
) -> tuple[int, list[Row]]:
    """One page of the worklist in priority order, and how many studies match in all."""
    extra, extra_params = clause(where)
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
    rows: list[Row] = []
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


def worklist_row(r: Row, now: float, escalate_after_s: float) -> WorklistRow:
    reviewed = float(r["reviewed_at"]) if r["reviewed_at"] is not None else None
    return WorklistRow(
        study_instance_uid=r["study_instance_uid"],
        state=r["state"],
        status=r["status"],
        priority=r["priority"],
        flagged=tuple(c for c in (r["flagged"] or "").split(",") if c),
        first_received=float(r["first_received"]),
        last_received=float(r["last_received"]),
        version=int(r["version"]),
        requested_priority=r["requested_priority"],
        effective_priority=effective_priority(
            r["requested_priority"],
            r["priority"],
            float(r["first_received"]),
            reviewed,
            now,
            escalate_after_s,
        ),
        reviewed_at=reviewed,
    )
