"""What the worklist and study pages show, as plain data built from the intake store.

The templates only lay these out; everything that decides what a radiologist sees (the order,
the escalation, the reason a study was not analysed, which boxes and heatmaps belong to which
image) is here, where it is tested without a browser.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, tzinfo
from pathlib import Path
from urllib.parse import urlencode

from babel.support import NullTranslations

from diagnostics.api.params import whole_number
from diagnostics.dicom.image import DicomImage
from diagnostics.dicom.reader import read_info
from diagnostics.errors import InputError, RequestError
from diagnostics.i18n import N_
from diagnostics.package import Manifest
from diagnostics.results import FindingResult, StudyResult, localised
from diagnostics.service.reasons import without_paths
from diagnostics.service.retention import earlier_urgent, purge_note
from diagnostics.service.review import feedback_for
from diagnostics.store import Store
from diagnostics.store.evidence import InstanceMaps
from diagnostics.store.priority import REQUESTED_PRIORITIES, WorklistFilter, effective_priority
from diagnostics.store.records import Feedback, WorklistRow
from diagnostics.ui.patient import PatientContext, local_time, patient_context
from diagnostics.ui.render import DisplayWindow
from diagnostics.ui.triage import FlagRule, flag_rules
from diagnostics.ui.viewer import Orientation, Prior, orientation, presets, priors, side_index

Load = Callable[[Path], DicomImage]
"""Reads a stored instance (the UI passes one that caches decoded images)."""

PAGE_SIZE = 50
STATUSES = {
    "analyzed": N_("Analysed"),
    "not_analyzed": N_("Not analysed"),
    "failed": N_("Failed"),
    "pending": N_("Pending"),
}
"""Labels in English; the page translates them."""
VERDICTS = {
    "agree": N_("agree"),
    "disagree": N_("disagree"),
    "comment": N_("comment"),
    "missed": N_("missed"),
}
PRIORITIES = {
    "stat": N_("stat"),
    "urgent": N_("urgent"),
    "escalated": N_("escalated"),
    "routine": N_("routine"),
}
READ_FILTERS: dict[str, bool | None] = {"unread": False, "read": True, "all": None}
DEFAULT_READ = "unread"
"""The worklist shows unread studies unless asked otherwise: what is left to read."""
QUERY_KEYS = ("q", "status", "finding", "from", "to", "read", "page")
MAX_SEARCH = 64
MAX_PANE_CANDIDATES = 8
"""Images whose header is read to find a lateral to show beside a PA."""


def when(timestamp: float, zone: tzinfo = UTC) -> str:
    return local_time(timestamp, zone)


def waited(seconds: float, t: NullTranslations | None = None) -> str:
    """How long a study has waited, in the language of `t` (English without one)."""
    t = t if t is not None else NullTranslations()
    minutes = max(0, int(seconds // 60))
    if minutes < 60:
        return t.gettext("%(minutes)s min") % {"minutes": minutes}
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return t.gettext("%(hours)s h %(minutes)s min") % {
            "hours": hours,
            "minutes": f"{minutes:02d}",
        }
    return t.gettext("%(days)s d %(hours)s h") % {"days": hours // 24, "hours": hours % 24}


# -- worklist ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WorklistEntry:
    row: WorklistRow
    status: str
    """`analyzed`, `not_analyzed`, `failed` or `pending`."""
    reason: str | None
    received: str
    waiting: float
    """Seconds; the page writes them with `waited` in its language."""
    patient: PatientContext = field(default_factory=PatientContext)

    @property
    def uid(self) -> str:
        return self.row.study_instance_uid


@dataclass(frozen=True)
class WorklistPage:
    entries: list[WorklistEntry]
    total: int
    page: int
    pages: int
    query: dict[str, str]
    """The filters as given (for the form and the pager links)."""
    finding_codes: tuple[str, ...]
    escalate_after_minutes: float

    def link(self, page: int) -> str:
        query = {k: v for k, v in self.query.items() if v and k != "page"}
        if page > 1:
            query["page"] = str(page)
        return "/ui/" + ("?" + urlencode(query) if query else "")

    @property
    def first_shown(self) -> int:
        return (self.page - 1) * PAGE_SIZE + 1 if self.entries else 0

    @property
    def last_shown(self) -> int:
        return (self.page - 1) * PAGE_SIZE + len(self.entries)


def plain(text: str | None) -> str | None:
    """A reason as a person reads it: without the server's folders (they mean nothing to a
    radiologist and tell a browser user how the server is laid out)."""
    return without_paths(text) if text is not None else None


def parse_filters(
    query: Mapping[str, str], codes: Sequence[str], zone: tzinfo = UTC
) -> tuple[WorklistFilter, int]:
    """The worklist filters and page number from the query string; RequestError names the bad
    one (never echoing a search, which is patient data). Dates are whole days in `zone` (`to`
    is inclusive)."""
    search = (query.get("q") or "").strip() or None
    if search is not None and len(search) > MAX_SEARCH:
        raise RequestError(f"the search must be at most {MAX_SEARCH} characters")
    status = query.get("status") or None
    if status is not None and status not in STATUSES:
        raise RequestError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    finding = query.get("finding") or None
    if finding is not None and finding not in codes:
        raise RequestError(f"finding must be one of {', '.join(codes)}, not {finding!r}")
    start, end = _day(query, "from", zone), _day(query, "to", zone)
    read = query.get("read") or DEFAULT_READ
    if read not in READ_FILTERS:
        raise RequestError("read must be read, unread or all")
    page = whole_number(query.get("page"), "page", default=1, low=1)
    return (
        WorklistFilter(
            status=status,
            finding=finding,
            received_from=start.timestamp() if start else None,
            received_before=(end + timedelta(days=1)).timestamp() if end else None,
            read=READ_FILTERS[read],
            search=search,
        ),
        page,
    )


def _day(query: Mapping[str, str], name: str, zone: tzinfo) -> datetime | None:
    text = query.get(name) or ""
    if not text:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise RequestError(f"{name} must be a date as YYYY-MM-DD, not {text!r}") from None
    if not 1900 <= day.year <= 9000:  # and the end of 9999-12-31 would overflow
        raise RequestError(f"{name} must be a date between 1900 and 9000, not {text!r}")
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def worklist_page(
    store: Store,
    query: Mapping[str, str],
    codes: Sequence[str],
    escalate_after_minutes: float,
    now: float | None = None,
    zone: tzinfo = UTC,
    viewer_url: str | None = None,
) -> WorklistPage:
    now = time.time() if now is None else now
    where, page = parse_filters(query, codes, zone)
    total, rows = store.worklist(
        where=where,
        limit=PAGE_SIZE,
        offset=(page - 1) * PAGE_SIZE,
        now=now,
        escalate_after_s=escalate_after_minutes * 60.0,
    )
    facts = store.study_facts([row.study_instance_uid for row in rows])
    entries = []
    for row in rows:
        reason = None
        if row.status in ("not_analyzed", "failed"):
            result = store.result_version(row.study_instance_uid, row.version)
            reason = plain(result.reason) if result is not None else None
        entries.append(
            WorklistEntry(
                row=row,
                status=row.status or "pending",
                reason=reason,
                received=when(row.first_received, zone),
                waiting=now - row.first_received,
                patient=patient_context(
                    row.study_instance_uid, facts.get(row.study_instance_uid), viewer_url
                ),
            )
        )
    return WorklistPage(
        entries=entries,
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
        query={k: query.get(k, "") for k in QUERY_KEYS},
        finding_codes=tuple(codes),
        escalate_after_minutes=escalate_after_minutes,
    )


# -- study ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ShownInstance:
    """The image on the page, with everything drawn over it in its own pixel coordinates."""

    index: int
    sop_instance_uid: str
    rows: int
    cols: int
    frame: int
    window: DisplayWindow
    value_range: tuple[float, float]
    boxes: list[FindingResult]
    """Flagged findings of this image whose box localises them (`results.localised`)."""
    heat_codes: tuple[str, ...]
    """Findings whose heatmap this image has (empty: no stored maps)."""
    default_heat: tuple[str, ...]
    """What the heatmap layer shows first: the flagged findings, else the most probable."""
    presets: dict[str, DisplayWindow] = field(default_factory=dict)
    """Window presets by name (`viewer.PRESETS`); `default` is the image's own VOI."""
    orientation: Orientation = field(default_factory=lambda: Orientation(None, None, None, None))

    @property
    def preset_values(self) -> dict[str, list[float]]:
        """The presets as the page's script reads them: name -> [centre, width]."""
        return {name: [w.center, w.width] for name, w in self.presets.items()}


@dataclass(frozen=True)
class StudyPage:
    uid: str
    state: dict[str, object]
    version: int
    result: StudyResult | None
    reason: str | None
    """Why the study was not analysed or failed (storage paths removed)."""
    instances: list[tuple[int, str, str, str | None]]
    """(index, SOP Instance UID, status, reason) of every stored instance."""
    shown: ShownInstance | None
    image_problem: str | None
    """Why the image cannot be displayed, when it cannot."""
    feedback: list[Feedback]
    effective_priority: str
    received: str
    waiting: float
    """Seconds; the page writes them with `waited` in its language."""
    requested_priorities: tuple[str, ...] = REQUESTED_PRIORITIES
    codes: tuple[str, ...] = field(default_factory=tuple)
    patient: PatientContext = field(default_factory=PatientContext)
    purge_note: str | None = None
    """Which images the result covers, when some were purged (`service.retention`)."""
    earlier_urgent: int | None = None
    """An earlier version flagged the study urgent and this one does not."""
    flag_rules: dict[str, FlagRule] = field(default_factory=dict)
    """What a flag of each finding does to the priority (`triage.flag_rules`; empty: unknown)."""
    side: ShownInstance | None = None
    """A second image shown beside the first (a lateral beside a PA), when there is one."""
    priors: list[Prior] = field(default_factory=list)
    """The patient's other studies (same Patient ID)."""

    @property
    def not_localised(self) -> frozenset[str]:
        """Codes of flagged findings drawn without a box: screening found no localised box, or
        (a result stored before the rule) the box covers too much of the image shown (either
        pane)."""
        drawn = {(pane.sop_instance_uid, f.code) for pane in self.panes for f in pane.boxes}
        shown = {pane.sop_instance_uid for pane in self.panes}
        findings = self.result.findings if self.result is not None else []
        return frozenset(
            f.code
            for f in findings
            if f.flagged
            and (
                f.bbox is None
                or (f.sop_instance_uid in shown and (f.sop_instance_uid, f.code) not in drawn)
            )
        )

    @property
    def panes(self) -> list[ShownInstance]:
        return [s for s in (self.shown, self.side) if s is not None]

    @property
    def can_give_feedback(self) -> bool:
        return self.result is not None and self.result.status == "analyzed"

    @property
    def read(self) -> bool:
        return self.state.get("reviewed_at") is not None


def study_page(
    store: Store,
    uid: str,
    index: int | None,
    load: Load,
    escalate_after_minutes: float,
    now: float | None = None,
    zone: tzinfo = UTC,
    viewer_url: str | None = None,
    t: NullTranslations | None = None,
    manifest: Manifest | None = None,
) -> StudyPage | None:
    """The study page's data; None when no instance of the study was ever received.

    `index` picks the image (arrival order); by default the one the findings come from.
    `manifest` (the loaded model's) says what each finding's flag does to the priority.
    """
    now = time.time() if now is None else now
    state = store.study_state(uid)
    if state is None:
        return None
    latest = store.latest_result(uid)
    version, result = latest if latest is not None else (0, None)
    stored = store.instances_of(uid)
    statuses = {
        i.sop_instance_uid: (i.status, plain(i.reason))
        for i in (result.instances if result else [])
    }
    instances = [
        (n, sop, *statuses.get(sop, ("pending", None))) for n, (sop, _) in enumerate(stored)
    ]
    if index is None:
        index = _evidence_index(result, [sop for sop, _ in stored])
    if not 0 <= index < max(1, len(stored)):
        raise RequestError(f"the study has {len(stored)} image(s); there is no image {index}")
    shown, side, problem = None, None, None
    if stored:
        sop, path = stored[index]
        maps = {m.sop_instance_uid: m for m in store.class_maps(uid, version)}
        try:
            image = load(path)
        except InputError as exc:
            problem = plain(f"this image cannot be displayed: {exc}")
        else:
            shown = _shown(index, sop, image, result, maps.get(sop))
            views = _views(store, stored) if len(stored) > 1 else [None]
            other = side_index(index, len(stored), views)
            if other is not None:
                side = _side(other, stored[other], load, result, maps)
    purged_at = state.get("purged_at")
    note = None
    if purged_at is not None:
        on = when(float(str(purged_at)), zone)
        note = purge_note(float(str(purged_at)), str(state["state"]), len(stored), on, t)
        if not stored:
            problem, note = note, None
    first = float(str(state["first_received"]))
    reviewed = state.get("reviewed_at")
    effective = effective_priority(
        _opt(state.get("requested_priority")),
        _opt(state.get("priority")),
        first,
        float(str(reviewed)) if reviewed is not None else None,
        now,
        escalate_after_minutes * 60.0,
    )
    return StudyPage(
        uid=uid,
        state=state,
        version=version,
        result=result,
        reason=plain(result.reason) if result is not None else None,
        instances=instances,
        shown=shown,
        image_problem=problem,
        feedback=feedback_for(store, uid),
        effective_priority=effective,
        received=when(first, zone),
        waiting=now - first,
        codes=tuple(f.code for f in result.findings) if result else (),
        patient=patient_context(uid, store.study_facts([uid]).get(uid), viewer_url),
        purge_note=note,
        earlier_urgent=earlier_urgent(store, uid, version, result),
        flag_rules=flag_rules(manifest, result.model if result is not None else None),
        side=side,
        priors=priors(store, uid, _patient_id(store, uid), zone, now),
    )


def _patient_id(store: Store, uid: str) -> str | None:
    facts = store.study_facts([uid]).get(uid)
    return facts.patient_id if facts is not None else None


def _views(store: Store, stored: Sequence[tuple[str, Path]]) -> list[str | None]:
    """Each stored image's View Position from its header (not decoded); at most the first
    `MAX_PANE_CANDIDATES` are looked at."""
    views: list[str | None] = []
    for n, (_, path) in enumerate(stored):
        view = None
        if n < MAX_PANE_CANDIDATES:
            with contextlib.suppress(InputError):
                view = read_info(path, store.limits).view_position
        views.append(view)
    return views


def _side(
    index: int,
    stored: tuple[str, Path],
    load: Load,
    result: StudyResult | None,
    maps: Mapping[str, InstanceMaps],
) -> ShownInstance | None:
    sop, path = stored
    try:
        return _shown(index, sop, load(path), result, maps.get(sop))
    except InputError:
        return None  # the images list below says why it cannot be shown


def _opt(value: object) -> str | None:
    return None if value is None else str(value)


def _evidence_index(result: StudyResult | None, sops: list[str]) -> int:
    if result is not None:
        for finding in sorted(result.findings, key=lambda f: (not f.flagged, -f.probability)):
            if finding.sop_instance_uid in sops:
                return sops.index(finding.sop_instance_uid)
        for item in result.instances:
            if item.status == "analyzed" and item.sop_instance_uid in sops:
                return sops.index(item.sop_instance_uid)
    return 0


def _shown(
    index: int,
    sop: str,
    image: DicomImage,
    result: StudyResult | None,
    maps: InstanceMaps | None,
) -> ShownInstance:
    frame = maps.frame if maps is not None else 0
    findings = [f for f in (result.findings if result else []) if f.sop_instance_uid == sop]
    flagged = tuple(f.code for f in findings if f.flagged)
    strongest = max(findings, key=lambda f: f.probability).code if findings else None
    default_heat = flagged or ((strongest,) if strongest else ())
    low, high = image.value_range
    rows, cols = image.info.rows, image.info.columns
    window = DisplayWindow.default(image, frame)
    return ShownInstance(
        index=index,
        sop_instance_uid=sop,
        rows=rows,
        cols=cols,
        frame=frame,
        window=window,
        value_range=(float(low), float(high)),
        boxes=[f for f in findings if f.flagged and localised(f.bbox, rows, cols)],
        heat_codes=maps.codes if maps is not None else (),
        default_heat=default_heat if maps is not None else (),
        presets=presets(image.pixels[frame], window),
        orientation=orientation(image.info.dataset),
    )
