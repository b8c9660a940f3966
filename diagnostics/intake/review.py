"""What radiologists record in the review UI: feedback per finding, read marks, priorities.

Feedback (the `feedback` table, created with the store) is the raw material of retraining
(`diagnostics feedback export`), so it is stored durably in the intake database with who gave
it and when, and each entry is written in the same transaction as its audit record. It names
the result version it was given on: a later rescreen may flag differently, and "agree" only
means something against the flag it saw.

Column names follow what `diagnostics research-export` already understands (`code`, `verdict`,
`comment` withheld, `box`, `created` shifted, the reviewer pseudonymised), so feedback leaves
the hospital de-identified without further work.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from typing import Literal, get_args

from diagnostics.dicom.reader import read_info
from diagnostics.errors import InputError, RequestError
from diagnostics.intake import fhir_reports
from diagnostics.intake.priority import REQUESTED_PRIORITIES
from diagnostics.intake.store import IntakeStore, audit_row
from diagnostics.results import StudyResult

Verdict = Literal["agree", "disagree", "missed", "comment"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)
MAX_COMMENT = 2000

Box = tuple[float, float, float, float]


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


@dataclass(frozen=True)
class Feedback:
    id: int
    study_instance_uid: str
    version: int
    sop_instance_uid: str | None
    code: str
    verdict: Verdict
    comment: str
    x: float | None
    y: float | None
    box: Box | None
    actor: str
    created: float


def record_feedback(store: IntakeStore, item: FeedbackInput, actor: str) -> Feedback:
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
    row = dataclasses.asdict(entry)
    del row["id"]
    row["box"] = json.dumps(list(entry.box)) if entry.box is not None else None
    with store.transaction() as db:
        cursor = db.execute(
            f"INSERT INTO feedback ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
            tuple(row.values()),
        )
        entry = dataclasses.replace(entry, id=int(cursor.lastrowid or 0))
        # The comment stays out of the audit log: free text may name the patient.
        audit_row(
            db,
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


def _result(store: IntakeStore, study: str, version: int) -> StudyResult:
    row = (
        store.connection()
        .execute(
            "SELECT result FROM results WHERE study_instance_uid = ? AND version = ?",
            (study, version),
        )
        .fetchone()
    )
    if row is None:
        raise RequestError(f"study {study} has no result version {version}")
    result = StudyResult.from_json(row["result"])
    if result.status != "analyzed":
        raise RequestError(
            f"study {study} version {version} was not analysed ({result.status}): there is no "
            "model flag to give feedback on"
        )
    return result


def _check_location(store: IntakeStore, item: FeedbackInput, sop: str) -> None:
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


def feedback_for(store: IntakeStore, study_instance_uid: str) -> list[Feedback]:
    """A study's feedback, oldest first."""
    rows = (
        store.connection()
        .execute(
            "SELECT * FROM feedback WHERE study_instance_uid = ? ORDER BY id",
            (study_instance_uid,),
        )
        .fetchall()
    )
    return [feedback_from_row(dict(r)) for r in rows]


def feedback_from_row(row: dict[str, object]) -> Feedback:
    box = json.loads(str(row["box"])) if row.get("box") else None
    return Feedback(
        id=int(str(row["id"])),
        study_instance_uid=str(row["study_instance_uid"]),
        version=int(str(row["version"])),
        sop_instance_uid=str(row["sop_instance_uid"]) if row.get("sop_instance_uid") else None,
        code=str(row["code"]),
        verdict=str(row["verdict"]),  # type: ignore[arg-type]
        comment=str(row.get("comment") or ""),
        x=_float(row.get("x")),
        y=_float(row.get("y")),
        box=tuple(float(v) for v in box) if box else None,  # type: ignore[arg-type]
        actor=str(row["actor"]),
        created=float(str(row["created"])),
    )


def _float(value: object) -> float | None:
    return None if value is None else float(str(value))


# -- read marks and priorities ---------------------------------------------------------------


def set_requested_priority(
    store: IntakeStore, study_instance_uid: str, priority: str | None, actor: str
) -> None:
    """A person's priority for a study; unlike the PACS's, it may also lower the request.

    None clears the request, leaving the model's priority. The model's own flag is never
    changed here: the effective priority stays at least what the model says.
    """
    if priority is not None and priority not in REQUESTED_PRIORITIES:
        raise RequestError(
            f"priority must be one of {', '.join(REQUESTED_PRIORITIES)}, not {priority!r}"
        )
    with store.transaction() as db:
        row = db.execute(
            "SELECT requested_priority FROM studies WHERE study_instance_uid = ?",
            (study_instance_uid,),
        ).fetchone()
        if row is None:
            raise RequestError(f"no study {study_instance_uid}")
        db.execute(
            "UPDATE studies SET requested_priority = ? WHERE study_instance_uid = ?",
            (priority, study_instance_uid),
        )
        audit_row(
            db,
            actor,
            "priority_set",
            study=study_instance_uid,
            priority=priority,
            previous=row["requested_priority"],
        )


def mark_read(store: IntakeStore, study_instance_uid: str, actor: str, read: bool = True) -> None:
    """Mark a study read (it stops escalating) or unread again; a read mark queues the `final`
    FHIR report for the FHIR destinations the result went to."""
    with store.transaction() as db:
        cursor = db.execute(
            "UPDATE studies SET reviewed_at = ? WHERE study_instance_uid = ?",
            (time.time() if read else None, study_instance_uid),
        )
        if cursor.rowcount == 0:
            raise RequestError(f"no study {study_instance_uid}")
        audit_row(db, actor, "study_read" if read else "study_unread", study=study_instance_uid)
        if read:  # the EMR's report becomes final, with its reader
            fhir_reports.queue_final(store, db, study_instance_uid, actor)
