"""Worklist priority: who may raise a study's priority, when waiting escalates it, and the
order every backend's worklist must page in (the SQLite one: `diagnostics.store.sqlite.worklist`).

A study has up to two priorities. The *requested* one comes from the PACS (the C-STORE
request's Priority) or from a person in the review UI: `stat`, `urgent` or `routine`. The
*model's* one is `urgent` when a finding the package marks `on_flag = "urgent"` is flagged
(`diagnostics.screening.interpret.study_priority`). The effective priority is the higher of
the two, so the model may raise a study but never lowers what a PACS or a person asked for.

Flagged studies must not starve the rest: a routine study that nobody has read and that has
waited longer than the escalation limit is shown as `escalated` and sorted with the urgent
ones (by time waiting), so an old routine study eventually overtakes newer flagged ones.

Order: stat, then urgent and escalated together, then routine; within each, the longest
waiting first. Escalation depends on the clock, so it cannot live in an index; instead each
group is an index range on the base rank and `first_received`, and the urgent group merges
two such ranges, so a page is read in index order and never sorted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

RequestedPriority = Literal["stat", "urgent", "routine"]
EffectivePriority = Literal["stat", "urgent", "escalated", "routine"]
REQUESTED_PRIORITIES: tuple[RequestedPriority, ...] = ("stat", "urgent", "routine")

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
    """The worklist order in Python: what every backend's query must agree with (tests compare
    them)."""
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
    search: str | None = None
    """Accession number or patient ID (exactly, any case), or words of the patient's name."""
