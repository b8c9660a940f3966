"""What the store hands out and takes in: plain records, the same whatever backend holds them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from diagnostics.fhir import ReportContext
from diagnostics.store.priority import EffectivePriority

Verdict = Literal["agree", "disagree", "missed", "comment"]
VERDICTS: tuple[Verdict, ...] = get_args(Verdict)

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class Received:
    """What intake recorded for one instance."""

    sop_instance_uid: str
    study_instance_uid: str
    duplicate: bool
    sop_class_uid: str | None = None
    """For STOW-RS responses, which name each instance by class and instance UID."""


@dataclass(frozen=True)
class WorklistRow:
    """One study as the worklist shows it (no patient data: UIDs and our own fields only)."""

    study_instance_uid: str
    state: str
    status: str | None
    priority: str | None
    """The model's priority (from the latest result); None before screening."""
    flagged: tuple[str, ...]
    first_received: float
    last_received: float
    version: int
    requested_priority: str | None = None
    """What the PACS or a person asked for (`stat`, `urgent`, `routine`)."""
    effective_priority: EffectivePriority = "routine"
    """The higher of the two, or `escalated` for a routine study left waiting too long."""
    reviewed_at: float | None = None


@dataclass(frozen=True)
class StudyFacts:
    """A study's patient and study facts from its headers (None: the headers do not say).
    Patient data: for the signed-in review pages only, never the JSON API's worklist."""

    patient_name: str | None = None
    patient_id: str | None = None
    birth_date: str | None = None
    sex: str | None = None
    age: str | None = None
    accession_number: str | None = None
    study_date: str | None = None
    study_time: str | None = None
    description: str | None = None
    institution: str | None = None
    modalities: tuple[str, ...] = ()
    views: tuple[str, ...] = ()


@dataclass(frozen=True)
class Claim:
    """A study taken for screening: `claimed_at` identifies the claim, `paths` what it covers."""

    study_instance_uid: str
    claimed_at: float
    paths: tuple[Path, ...]
    tries: int = 1
    """Claims of this study since its last result, this one included: more than one means
    earlier claims ended without a result (their process died, or could not record it)."""


@dataclass(frozen=True)
class OutboxItem:
    id: int
    study_instance_uid: str
    path: Path
    destination: str
    attempts: int


@dataclass(frozen=True)
class Delivery:
    """One output queued for one destination when a result is recorded."""

    destination: str
    path: Path


@dataclass(frozen=True)
class Feedback:
    """One radiologist verdict as stored (`diagnostics.service.review` says why it looks so)."""

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


@dataclass(frozen=True)
class StoredInstance:
    """One stored instance, as the exports read it."""

    sop_instance_uid: str
    study_instance_uid: str
    sop_class_uid: str
    path: Path


@dataclass(frozen=True)
class PreparedContext:
    """A result's FHIR report context, for the version it was prepared for: recorded with the
    result only when that is the version the result gets."""

    version: int
    context: ReportContext


def feedback_from_row(row: dict[str, object]) -> Feedback:
    """A stored feedback row (column name to value) back as a record."""
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


@dataclass(frozen=True)
class PurgedStudy:
    """One study whose stored images and output files a purge deletes (or, dry, would)."""

    study_instance_uid: str
    result_created: float
    """When its newest result was recorded: what the retention window is counted from."""
    files: tuple[Path, ...]
    """Stored instances and output files (SR, overlay, presentation state, FHIR bundles)."""
    bytes: int


@dataclass(frozen=True)
class PurgeReport:
    """What one purge deleted (or, dry, would delete)."""

    cutoff: float
    studies: tuple[PurgedStudy, ...]
    leftovers: tuple[Path, ...]
    """Files an interrupted purge or intake left behind that nothing refers to any more."""
    bytes: int
    dry_run: bool


@dataclass(frozen=True)
class MonitoredResult:
    """One study's current result in a monitoring window (`Store.monitored_results`): only
    what the daily statistics count, no patient data and no UID."""

    created: float
    status: str
    reason: str | None
    model_version: str | None
    findings: tuple[tuple[str, float, bool], ...]
    """(code, calibrated probability, flagged) per finding."""
    appearance: tuple[float, ...]
    """Appearance scores of the study's images that have one (analysed or refused)."""
    feedback: tuple[tuple[str, str], ...]
    """(code, verdict) of each finding's latest agree/disagree/missed verdict on this version."""
