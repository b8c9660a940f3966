"""What radiologists record in the review UI: feedback per finding, read marks, priorities.

Feedback (the `feedback` table, created with the store) is the raw material of retraining
(`diagnostics feedback export`), so it is stored durably in the store with who gave
it and when, and each entry is written in the same transaction as its audit record. It names
the result version it was given on: a later rescreen may flag differently, and "agree" only
means something against the flag it saw.

Column names follow what `diagnostics research-export` already understands (`code`, `verdict`,
`comment` withheld, `box`, `created` shifted, the reviewer pseudonymised), so feedback leaves
the hospital de-identified without further work.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass

from diagnostics.dicom.reader import read_info
from diagnostics.errors import InputError, RequestError
from diagnostics.results import StudyResult
from diagnostics.service import fhir_reports
from diagnostics.store import Store
from diagnostics.store.priority import REQUESTED_PRIORITIES
from diagnostics.store.records import VERDICTS, Box, Feedback, Verdict

MAX_COMMENT = 2000


@dataclass(frozen=True)
class FeedbackInput:
    """One verdict as submitted; checked on construction, then against the result it names.

    `missed` says the finding is present where the model did not flag it (or flagged it in
    the wrong place): it needs a location, a point (`x`, `y`) in the source image's pixel
    columns and rows, and optionally a region `box` (x0, y0, x1, y1) when one was dragged.
    """

    study_instance_uid: str
    version: int
    code: str
    verdict: Verdict
    comment: str = ""
    sop_instance_uid: str | None = None
    x: float | None = None
    y: float | None = None
    box: Box | None = None

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise RequestError(
                f"verdict must be one of {', '.join(VERDICTS)}, not {self.verdict!r}"
            )
        if len(self.comment) > MAX_COMMENT:
            raise RequestError(f"a comment holds at most {MAX_COMMENT} characters")
        if self.verdict == "comment" and not self.comment.strip():
            raise RequestError("a comment needs some text")
        located = self.x is not None and self.y is not None
        if (self.x is None) != (self.y is None):
            raise RequestError("a location needs both x and y")
        if self.verdict == "missed" and not located:
            raise RequestError("a missed finding needs its location: click it on the image")
        numbers = [v for v in (self.x, self.y, *(self.box or ())) if v is not None]
        if any(not math.isfinite(v) or v < 0 for v in numbers):
            raise RequestError("locations are pixel coordinates: finite and not negative")
        if self.box is not None:
            x0, y0, x1, y1 = self.box
            if not (x0 < x1 and y0 < y1):
                raise RequestError(f"the region {self.box} is not a box (x0 < x1, y0 < y1)")
            if not located:
                raise RequestError("a region needs its point as well")


def record_feedback(store: Store, item: FeedbackInput, actor: str) -> Feedback:
    """Check a verdict against the result it names, then store and audit it together.

    Feedback is only taken on analysed results: elsewhere there is no model flag to agree or
    disagree with. The location, if any, must lie on an image of the study.
    """
    result = _result(store, item.study_instance_uid, item.version)
    codes = [f.code for f in result.findings]
    if item.code not in codes:
        raise RequestError(
            f"{item.code!r} is not a finding of this result; choose one of {', '.join(codes)}"
        )
    finding = result.findings[codes.index(item.code)]
    sop = item.sop_instance_uid or finding.sop_instance_uid
    if item.x is not None and item.y is not None:
        _check_location(store, item, sop)
    entry = Feedback(
        id=0,  # set from the insert below
        study_instance_uid=item.study_instance_uid,
        version=item.version,
        sop_instance_uid=sop,
        code=item.code,
        verdict=item.verdict,
        comment=item.comment.strip(),
        x=item.x,
        y=item.y,
        box=item.box,
        actor=actor,
        created=time.time(),
    )
    with store.transaction() as tx:
        entry = dataclasses.replace(entry, id=tx.add_feedback(entry))
        # The comment stays out of the audit log: free text may name the patient.
        tx.audit(
            actor,
            "feedback_recorded",
            study=entry.study_instance_uid,
            version=entry.version,
            code=entry.code,
            verdict=entry.verdict,
            feedback_id=entry.id,
            located=entry.x is not None,
        )
    return entry


def _result(store: Store, study: str, version: int) -> StudyResult:
    result = store.result_version(study, version)
    if result is None:
        raise RequestError(f"study {study} has no result version {version}")
    if result.status != "analyzed":
        raise RequestError(
            f"study {study} version {version} was not analysed ({result.status}): there is no "
            "model flag to give feedback on"
        )
    return result


def _check_location(store: Store, item: FeedbackInput, sop: str) -> None:
    path = store.instance_path(item.study_instance_uid, sop)
    if path is None:
        raise RequestError(f"instance {sop} is not part of study {item.study_instance_uid}")
    try:
        info = read_info(path, store.limits)
    except InputError as exc:
        raise RequestError(f"instance {sop} cannot be read to check the location: {exc}") from None
    points = [(item.x or 0.0, item.y or 0.0)]
    if item.box is not None:
        points += [(item.box[0], item.box[1]), (item.box[2], item.box[3])]
    for x, y in points:
        if x > info.columns or y > info.rows:
            raise RequestError(
                f"location ({x:g}, {y:g}) lies outside the {info.columns} x {info.rows} image"
            )


def feedback_for(store: Store, study_instance_uid: str) -> list[Feedback]:
    """A study's feedback, oldest first."""
    return store.feedback_for(study_instance_uid)


# -- read marks and priorities ---------------------------------------------------------------


def set_requested_priority(
    store: Store, study_instance_uid: str, priority: str | None, actor: str
) -> None:
    """A person's priority for a study; unlike the PACS's, it may also lower the request.

    None clears the request, leaving the model's priority. The model's own flag is never
    changed here: the effective priority stays at least what the model says.
    """
    if priority is not None and priority not in REQUESTED_PRIORITIES:
        raise RequestError(
            f"priority must be one of {', '.join(REQUESTED_PRIORITIES)}, not {priority!r}"
        )
    with store.transaction() as tx:
        found, previous = tx.requested_priority(study_instance_uid)
        if not found:
            raise RequestError(f"no study {study_instance_uid}")
        tx.set_requested_priority(study_instance_uid, priority)
        tx.audit(
            actor,
            "priority_set",
            study=study_instance_uid,
            priority=priority,
            previous=previous,
        )


def mark_read(store: Store, study_instance_uid: str, actor: str, read: bool = True) -> None:
    """Mark a study read (it stops escalating) or unread again; a read mark queues the `final`
    FHIR report for the FHIR destinations the result went to."""
    with store.transaction() as tx:
        if not tx.set_reviewed(study_instance_uid, time.time() if read else None):
            raise RequestError(f"no study {study_instance_uid}")
        tx.audit(actor, "study_read" if read else "study_unread", study=study_instance_uid)
        if read:  # the EMR's report becomes final, with its reader
            fhir_reports.queue_final(store, tx, study_instance_uid, actor)
