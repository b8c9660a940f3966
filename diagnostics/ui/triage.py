"""Triage on the review pages: the reading order (next and previous unread study, where
"Mark as read" goes), how often the worklist refreshes itself, how many decimals a
probability needs to be read against its operating point, and what a flag of each finding does
to the study's priority. `docs/architecture.md` ("Triage
signal") states the rules; the keys that use them are in `static/ui.js`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal
from urllib.parse import quote

from diagnostics.package import Manifest
from diagnostics.results import FindingResult, ModelRef
from diagnostics.service.review import mark_read
from diagnostics.store import Store
from diagnostics.store.priority import WorklistFilter

WORKLIST_REFRESH_S = 15
"""How often an open worklist fetches itself again (new studies, changed priorities)."""
NEIGHBOUR_WINDOW = 1000
"""How far down the unread worklist the study page looks for its previous and next study."""
PROBABILITY_DIGITS = (2, 6)
"""Fewest and most decimals a probability is shown with (see `digits_apart`)."""


def digits_apart(value: float, reference: float) -> int:
    """Decimals to show `value` and `reference` (a probability and its operating point) with, so
    that they read apart when they differ: 0.995 vs 0.990, never "1.00 vs 1.00". At least two;
    more while they round alike, or while a probability short of 1 (above 0) rounds to 1 (0)."""
    low, high = PROBABILITY_DIGITS
    for digits in range(low, high + 1):
        a, b = round(value, digits), round(reference, digits)
        whole = any(
            v not in (0.0, 1.0) and round(v, digits) in (0.0, 1.0) for v in (value, reference)
        )
        if (a != b or value == reference) and not whole:
            return digits
    return high


OnFlag = Literal["urgent", "routine"]


@dataclass(frozen=True)
class FlagRule:
    """What a flag of one finding does to the study's priority (the package's `on_flag` and
    `urgent_threshold`): raise it to urgent (from `urgent_from` on, when set) or leave it
    routine."""

    on_flag: OnFlag = "urgent"
    urgent_from: float | None = None

    def raises(self, finding: FindingResult) -> bool:
        """Whether this finding, as scored, raised the study to urgent."""
        if not finding.flagged or self.on_flag != "urgent":
            return False
        return self.urgent_from is None or finding.probability >= self.urgent_from


def flag_rules(manifest: Manifest | None, model: ModelRef | None) -> dict[str, FlagRule]:
    """Finding code -> rule, from `manifest` when it is the package that produced the result
    (`model`, same sha256); empty when the rule is not known here (another model's result): the
    page then states no rule rather than guess one. Packages from before the catalogue's
    `on_flag` have no such fields: every flag of theirs raises the study to urgent."""
    if manifest is None or model is None or manifest.sha256 != model.sha256:
        return {}
    rules: dict[str, FlagRule] = {}
    for spec in manifest.findings:
        on_flag = getattr(spec, "on_flag", "urgent")
        urgent_from = getattr(spec, "urgent_threshold", None)
        rules[spec.code] = FlagRule(
            "routine" if on_flag == "routine" else "urgent",
            float(urgent_from) if urgent_from is not None else None,
        )
    return rules


@dataclass(frozen=True)
class Neighbours:
    """A study's previous and next study in the unread worklist's order (the default list)."""

    previous: str | None = None
    next: str | None = None


def neighbours(
    store: Store, uid: str, escalate_after_minutes: float, now: float | None = None
) -> Neighbours:
    """Where `uid` sits in the unread worklist: its neighbours, or (when it is read or beyond
    the window) no previous and the first unread study as next."""
    _, rows = store.worklist(
        where=WorklistFilter(read=False),
        limit=NEIGHBOUR_WINDOW,
        now=time.time() if now is None else now,
        escalate_after_s=escalate_after_minutes * 60.0,
    )
    uids = [row.study_instance_uid for row in rows]
    if uid not in uids:
        return Neighbours(None, uids[0] if uids else None)
    at = uids.index(uid)
    return Neighbours(
        uids[at - 1] if at > 0 else None, uids[at + 1] if at + 1 < len(uids) else None
    )


def next_unread(store: Store, uid: str, escalate_after_minutes: float) -> str | None:
    """The study to open after marking `uid` read (asked before marking it): the one after it in
    the unread worklist, else the first unread one other than itself."""
    after = neighbours(store, uid, escalate_after_minutes)
    if after.next is not None:
        return after.next
    first = neighbours(store, "", escalate_after_minutes).next
    return first if first != uid else None


def read_and_move_on(
    store: Store, uid: str, actor: str, read: bool, escalate_after_minutes: float
) -> str | None:
    """Mark `uid` read (or unread) and say where the browser goes: marking read opens the next
    unread study in worklist order (looked up before the mark), or the worklist when none is
    left; marking unread stays on the study (None)."""
    after = next_unread(store, uid, escalate_after_minutes) if read else None
    mark_read(store, uid, actor, read=read)
    if not read:
        return None
    return f"/ui/studies/{quote(after)}?saved=moved" if after else "/ui/?saved=read"
