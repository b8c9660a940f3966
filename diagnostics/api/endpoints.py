"""What each HTTP endpoint does, as plain functions of a `Runtime`: testable without a server.

Each returns a `Reply` (status, JSON body, headers); `diagnostics.api.app` only reads the
request, calls one of these in a worker thread and writes the reply.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import get_args

from diagnostics.api.bodies import Part, split_dicom_parts
from diagnostics.api.metrics import ServiceMetrics
from diagnostics.api.params import whole_number
from diagnostics.api.schemas import (
    PendingScreen,
    Refusal,
    RefusedPart,
    StudyState,
    WorklistItem,
    WorklistPage,
    WorklistStatus,
)
from diagnostics.api.status import error_body, error_headers, http_status
from diagnostics.api.stow import StowItem, build_stow_response, failed_item, stored_item
from diagnostics.dicom.header import refusal_category
from diagnostics.dicom.reader import read_info
from diagnostics.errors import DiagnosticsError, InputError, RequestError, StoreError
from diagnostics.service.retention import earlier_urgent, purge_note
from diagnostics.service.runtime import InstanceOutcome, Runtime
from diagnostics.store.records import WorklistRow

log = logging.getLogger(__name__)

JSON = "application/json"
WORKLIST_STATUSES: tuple[str, ...] = get_args(WorklistStatus)
MAX_PAGE = 500
DEFAULT_PAGE = 50


@dataclass(frozen=True)
class Reply:
    status: int
    body: object
    media_type: str = JSON
    headers: dict[str, str] = field(default_factory=dict)


def error_reply(error: DiagnosticsError, **extra: object) -> Reply:
    status = http_status(error)
    return Reply(status, error_body(error, **extra), headers=error_headers(status))


def not_ready() -> Reply:
    return Reply(
        503,
        {"error": "NotReady", "message": "the service is starting or stopping; retry shortly"},
        headers=error_headers(503),
    )


# -- POST /v1/screen ------------------------------------------------------------------------


def screen_upload(
    runtime: Runtime,
    content_type: str | None,
    body: bytes,
    actor: str,
    metrics: ServiceMetrics | None = None,
) -> Reply:
    """Store the instances durably, screen each study at once, return its StudyResult.

    All or nothing: when any part is not a usable DICOM image, nothing is stored and the reply
    (400 or 422) names every refused part and why. One study gives the StudyResult object,
    several a list; a study whose screening has not finished in time gives 202.
    """
    try:
        parts, refused = split_dicom_parts(content_type, body)
    except RequestError as exc:
        return error_reply(exc)
    problems: list[tuple[Part, InputError]] = list(refused)
    for part in parts:
        try:
            read_info(part.data, runtime.store.limits)
        except InputError as exc:
            problems.append((part, exc))
    if problems:
        for part, error in problems:  # its class only: the message quotes header values
            reason = refusal_category(error)
            log.warning("screen request from %s: %s refused (%s)", actor, part.label, reason)
        if metrics is not None:
            metrics.count_outcomes("http", [], refused=len(parts) + len(refused))
        return _refused_reply(problems, total=len(parts) + len(refused))
    outcomes = runtime.receive_many([p.data for p in parts], actor)
    if metrics is not None:
        metrics.count_outcomes("http", outcomes)
    failures = [o for o in outcomes if o.error is not None]
    if failures:
        return _store_failure_reply(failures, parts)
    studies = list(dict.fromkeys(o.received.study_instance_uid for o in outcomes if o.received))
    screened = runtime.screen_studies(studies)  # waits at most `screen_wait_seconds`
    results = [r for r in screened.values() if r is not None]
    pending = [study for study, r in screened.items() if r is None]
    if pending:
        wait = runtime.config.screen_wait_seconds
        pending_body = PendingScreen(
            message=(
                f"stored; screening has not finished within {wait:g} s (or the service is "
                "stopping): poll GET /v1/studies/{uid}; the result is recorded when it is done"
            ),
            pending=pending,
            results=results,
        )
        return Reply(
            202,
            pending_body.model_dump(mode="json"),
            headers={"Location": f"/v1/studies/{pending[0]}", "Retry-After": "5"},
        )
    if len(results) == 1:
        return Reply(200, results[0].model_dump(mode="json"))
    return Reply(200, [r.model_dump(mode="json") for r in results])


def _refused_reply(problems: Sequence[tuple[Part, InputError]], total: int) -> Reply:
    problems = sorted(problems, key=lambda p: p[0].index)
    only_request_errors = all(isinstance(e, RequestError) for _, e in problems)
    summary = "; ".join(f"{part.label}: {error}" for part, error in problems)
    body = Refusal(
        error="InstancesRefused",
        message=f"{len(problems)} of {total} parts refused, nothing was stored: {summary}",
        refused=[_refused_part(part.index, error) for part, error in problems],
    )
    return Reply(400 if only_request_errors else 422, body.model_dump(mode="json"))


def _refused_part(index: int, error: BaseException | None) -> RefusedPart:
    return RefusedPart(part=index + 1, error=type(error).__name__, message=str(error))


def _store_failure_reply(failures: Sequence[InstanceOutcome], parts: Sequence[Part]) -> Reply:
    first = failures[0].error
    assert first is not None
    status = 503 if any(isinstance(o.error, StoreError) for o in failures) else http_status(first)
    body = Refusal(
        error=type(first).__name__,
        message=f"{len(failures)} of {len(parts)} instances could not be stored: {first}",
        refused=[_refused_part(o.index, o.error) for o in failures],
    )
    return Reply(status, body.model_dump(mode="json"), headers=error_headers(status))


# -- POST /dicomweb/studies (STOW-RS) ------------------------------------------------------


def store_upload(
    runtime: Runtime,
    content_type: str | None,
    body: bytes,
    actor: str,
    metrics: ServiceMetrics | None = None,
) -> Reply:
    """Store what can be stored; the background worker screens each study once it is quiet."""
    try:
        parts, refused = split_dicom_parts(content_type, body)
    except RequestError as exc:
        return error_reply(exc)
    outcomes = runtime.receive_many([p.data for p in parts], actor)
    if metrics is not None:
        metrics.count_outcomes("stow", outcomes, refused=len(refused))
    items: dict[int, StowItem] = {}
    failures: list[tuple[Part, DiagnosticsError]] = list(refused)
    for part, outcome in zip(parts, outcomes, strict=True):
        if outcome.received is not None:
            items[part.index] = stored_item(
                outcome.received.sop_class_uid, outcome.received.sop_instance_uid
            )
        elif outcome.error is not None:
            failures.append((part, outcome.error))
    for part, error in sorted(failures, key=lambda f: f[0].index):
        items[part.index] = failed_item(part.data, error, part.label)
        # Its class only: the comment, for the sender, quotes header values.
        log.warning("STOW-RS from %s: refused %s (%s)", actor, part.label, refusal_category(error))
    ordered = [items[i] for i in sorted(items)]
    response = build_stow_response(ordered)
    return Reply(response.status, response.body, media_type=response.media_type)


# -- GET /v1/studies/{uid} -----------------------------------------------------------------


def unknown_study(study_instance_uid: str) -> Reply:
    """404 for a study of which no instance has been received."""
    body = {
        "error": "NotFound",
        "message": "no instance of this study has been received",
        "study_instance_uid": study_instance_uid,
    }
    return Reply(404, body)


def study_reply(runtime: Runtime, study_instance_uid: str, actor: str) -> Reply:
    """200 with the newest result; 202 with the state while (re)screening is due; 404 if unknown."""
    state = runtime.store.study_state(study_instance_uid)
    if state is None:
        return unknown_study(study_instance_uid)
    runtime.store.audit(actor, "result_read", study=study_instance_uid)
    latest = runtime.store.latest_result(study_instance_uid)
    version, result = latest if latest is not None else (0, None)
    purged_at = None if state.get("purged_at") is None else float(str(state["purged_at"]))
    count = int(str(state.get("instance_count") or 0))
    on = "" if purged_at is None else datetime.fromtimestamp(purged_at, UTC).date().isoformat()
    body = StudyState(
        study_instance_uid=study_instance_uid,
        state=str(state["state"]),
        version=version,
        result=result,
        images_purged=purged_at is not None,
        images_note=purge_note(purged_at, str(state["state"]), count, on),
        earlier_urgent_version=earlier_urgent(runtime.store, study_instance_uid, version, result),
    ).model_dump(mode="json")
    if state["state"] == "done" and result is not None:
        return Reply(200, body)
    wait = max(1, math.ceil(runtime.config.stable_seconds))
    return Reply(202, body, headers={"Retry-After": str(wait)})


# -- GET /v1/worklist ----------------------------------------------------------------------


def worklist_reply(runtime: Runtime, query: Mapping[str, str], actor: str) -> Reply:
    """A page of the worklist in priority order (`diagnostics.store.priority`): stat, then
    urgent and escalated, then routine, each longest waiting first."""
    try:
        status, finding, limit, offset = _worklist_query(query)
    except RequestError as exc:
        return error_reply(exc)
    total, rows = runtime.store.worklist(
        status=status,
        finding=finding,
        limit=limit,
        offset=offset,
        escalate_after_s=runtime.config.escalate_after_minutes * 60.0,
    )
    runtime.store.audit(actor, "worklist_read", count=len(rows))
    page = WorklistPage(
        total=total, limit=limit, offset=offset, items=[_worklist_item(row) for row in rows]
    )
    return Reply(200, page.model_dump(mode="json"))


def _worklist_query(query: Mapping[str, str]) -> tuple[str | None, str | None, int, int]:
    unknown = sorted(set(query) - {"status", "finding", "limit", "offset"})
    if unknown:
        raise RequestError(
            f"unknown query parameter(s) {', '.join(unknown)}; use status, finding, limit, offset"
        )
    status = query.get("status") or None
    if status is not None and status not in WORKLIST_STATUSES:
        raise RequestError(f"status must be one of {', '.join(WORKLIST_STATUSES)}, not {status!r}")
    finding = query.get("finding") or None
    if finding is not None and (len(finding) > 64 or "," in finding):
        raise RequestError("finding must be one finding code, e.g. finding=nodule")
    limit = _int_param(query, "limit", DEFAULT_PAGE, 1, MAX_PAGE)
    offset = _int_param(query, "offset", 0, 0, 10**9)
    return status, finding, limit, offset


def _int_param(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    return whole_number(query.get(name), name, default=default, low=low, high=high)


def _worklist_item(row: WorklistRow) -> WorklistItem:
    return WorklistItem(
        study_instance_uid=row.study_instance_uid,
        state=row.state,
        status=row.status or "pending",
        priority=row.priority,
        requested_priority=row.requested_priority,
        effective_priority=row.effective_priority,
        read=row.reviewed_at is not None,
        flagged=list(row.flagged),
        waiting_since=_iso(row.first_received),
        last_received=_iso(row.last_received),
        version=row.version,
    )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")
