"""`research-export`: a de-identified copy of the intake store for researchers.

Reads one consistent snapshot of the store (instances, the latest result per study, radiologist
feedback when that table exists), de-identifies every instance with the Basic Profile, holds
back instances that may show patient details in their pixels, and writes

    OUT/studies/<new study UID>/<n>.dcm   OUT/results.jsonl   OUT/feedback.jsonl
    OUT/quarantine.jsonl                  OUT/manifest.json

naming nothing by an original identifier. The export is written into a hidden folder beside
OUT and renamed into place at the end, so OUT is either complete or absent; an existing OUT is
never overwritten. Results and feedback get the same UID mapping as the images, so they still
point at the exported instances. No free-text reason leaves: study, instance and output-failure
reasons are replaced by a fixed text naming the status or output (`WITHHELD`), since a reason
may quote a header value or a stored file's path.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pydicom

import diagnostics
from diagnostics.deid.dates import shift_timestamp
from diagnostics.deid.engine import Deidentifier, patient_key
from diagnostics.deid.keys import Keys
from diagnostics.deid.quarantine import quarantine_reason
from diagnostics.dicom.reader import PARSER_FAILURES
from diagnostics.durable import publish_folder, staging_folder
from diagnostics.errors import ConfigurationError
from diagnostics.results import StudyResult
from diagnostics.store import read_snapshot, store_exists
from diagnostics.store.records import StoredInstance

FORMAT = "diagnostics-research-export/1"
_FAILURES = PARSER_FAILURES
"""What pydicom raises on a damaged stored file: caught per instance, which is quarantined."""

_FEEDBACK_UIDS = ("study_instance_uid", "series_instance_uid", "sop_instance_uid")
_FEEDBACK_KEPT = frozenset(
    {"code", "finding", "finding_code", "display", "verdict", "box", "bbox", "version", "x", "y"}
)
_FEEDBACK_PEOPLE = frozenset(
    {"user", "username", "user_id", "reviewer", "radiologist", "author", "actor"}
)
_FEEDBACK_TIMES = frozenset({"created", "created_at", "updated", "updated_at", "at", "timestamp"})
_FEEDBACK_TEXT = frozenset({"comment", "comments", "note", "notes", "text"})


@dataclass(frozen=True)
class ExportOptions:
    """What to export, where, and how; checked by `export_research` before anything is read."""

    storage: Path
    out: Path
    shift_dates: bool = False
    salt_file: Path | None = None
    """Where the secret salt lives (created if missing); None: a salt only this run knows."""
    studies: tuple[str, ...] = ()
    """Study Instance UIDs to export; empty: every study in the store."""
    database: str | None = None
    """The store's PostgreSQL when the nodes share one; None: the SQLite in `storage`."""


@dataclass(frozen=True)
class ExportSummary:
    out: Path
    studies: int
    instances: int
    quarantined: int
    results: int
    feedback: int

    def as_dict(self) -> dict[str, object]:
        return {
            "out": str(self.out),
            "studies": self.studies,
            "instances": self.instances,
            "quarantined": self.quarantined,
            "results": self.results,
            "feedback": self.feedback,
        }


@dataclass(frozen=True)
class _Snapshot:
    instances: list[StoredInstance]
    results: dict[str, StudyResult]
    unreadable_results: int
    """Stored results this version cannot parse (an older schema): left out and counted."""
    feedback: list[dict[str, object]] | None
    """None when the store has no feedback table (older stores)."""


def export_research(options: ExportOptions) -> ExportSummary:
    """Write a de-identified export of the store to `options.out`; see the module docstring."""
    out = options.out
    if not store_exists(options.storage, options.database):
        raise ConfigurationError(f"--storage {options.storage}: no intake database there")
    if out.exists():
        raise ConfigurationError(f"--out {out} already exists: an export is never overwritten")
    if options.salt_file is not None and options.salt_file.resolve().is_relative_to(out.resolve()):
        raise ConfigurationError("--salt-file must be outside --out: the salt is the secret")
    keys = Keys.from_file(options.salt_file) if options.salt_file else Keys.ephemeral()
    snapshot = _read_store(options.storage, options.studies, options.database)
    with staging_folder(out) as staging:
        summary = _write(staging, snapshot, keys, options)
        if out.exists():
            raise ConfigurationError(f"--out {out} appeared while exporting; nothing replaced")
        publish_folder(staging, out)
    return ExportSummary(out, *summary)


def _read_store(storage: Path, studies: tuple[str, ...], database: str | None) -> _Snapshot:
    """One consistent read-only snapshot of the store (`diagnostics.store.read_snapshot`)."""
    with read_snapshot(storage, database) as snapshot:
        rows = snapshot.instances()
        result_rows = snapshot.latest_results()
        feedback_rows = snapshot.feedback_rows()
    known = {row.study_instance_uid for row in rows}
    missing = [uid for uid in studies if uid not in known]
    if missing:
        raise ConfigurationError(
            f"--studies: {len(missing)} of {len(studies)} are not in the store: "
            + ", ".join(missing[:5])
        )
    wanted = set(studies) or known
    instances = [row for row in rows if row.study_instance_uid in wanted]
    results: dict[str, StudyResult] = {}
    unreadable = 0
    for study, text in result_rows:
        if study in wanted:
            try:
                results[study] = StudyResult.from_json(text)
            except ValueError:  # pydantic's ValidationError is a ValueError
                unreadable += 1
    feedback = None
    if feedback_rows is not None:
        feedback = [r for r in feedback_rows if r.get("study_instance_uid") in wanted]
    return _Snapshot(instances, results, unreadable, feedback)


def _write(
    root: Path, snapshot: _Snapshot, keys: Keys, options: ExportOptions
) -> tuple[int, int, int, int, int]:
    deid = Deidentifier(keys, shift_dates=options.shift_dates)
    counts: dict[str, int] = {}
    offsets: dict[str, int] = {}
    quarantined: list[str] = []
    (root / "studies").mkdir()
    for stored in snapshot.instances:
        new_study = keys.uid(stored.study_instance_uid)
        record = {
            "study_instance_uid": new_study,
            "sop_instance_uid": keys.uid(stored.sop_instance_uid),
            "sop_class_uid": stored.sop_class_uid,
        }
        try:
            source = pydicom.dcmread(stored.path, force=True)  # bare datasets are stored too
        except _FAILURES as exc:
            quarantined.append(
                json.dumps({**record, "reason": f"unreadable: {type(exc).__name__}"})
            )
            continue
        offsets.setdefault(stored.study_instance_uid, keys.day_offset(patient_key(source)))
        reason = quarantine_reason(source)
        if reason is not None:
            quarantined.append(json.dumps({**record, "reason": reason}))
            continue
        number = counts.get(new_study, 0) + 1
        target = root / "studies" / new_study / f"{number}.dcm"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            deid.deidentify(source).save_as(target, enforce_file_format=True)
        except _FAILURES as exc:
            # The message may quote a value; only the kind of failure goes into the report.
            target.unlink(missing_ok=True)
            if number == 1:
                target.parent.rmdir()
            why = f"could not be de-identified: {type(exc).__name__}"
            quarantined.append(json.dumps({**record, "reason": why}))
            continue
        counts[new_study] = number
    days = offsets if options.shift_dates else {}
    results = [
        _map_result(result, keys, days.get(study)).to_json()
        for study, result in sorted(snapshot.results.items())
    ]
    feedback, dropped = _map_feedback(snapshot.feedback or [], keys, days)
    _write_lines(root / "results.jsonl", results)
    _write_lines(root / "feedback.jsonl", feedback)
    _write_lines(root / "quarantine.jsonl", quarantined)
    exported = sum(counts.values())
    manifest = _manifest(deid, keys, options, snapshot, dropped)
    manifest["counts"] = {
        "studies": len(counts),
        "instances": exported,
        "quarantined": len(quarantined),
        "results": len(results),
        "results_unreadable": snapshot.unreadable_results,
        "feedback": len(feedback),
    }
    manifest["studies"] = [{"study_instance_uid": s, "instances": n} for s, n in counts.items()]
    (root / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return len(counts), exported, len(quarantined), len(results), len(feedback)


WITHHELD = "reason withheld from research exports: it may quote header values"
"""What replaces every free-text reason: the status (and output kind) say what happened."""


def _map_result(result: StudyResult, keys: Keys, days: int | None) -> StudyResult:
    """The result with new UIDs and no free text: a reason may quote a header value (a series
    description, an institution, a path naming the site), so none is copied; the status and
    output kind that stay are the coded reason."""
    data = result.model_dump(mode="json")
    data["study_instance_uid"] = keys.uid(result.study_instance_uid)
    if result.reason is not None:
        data["reason"] = f"study {result.status}: {WITHHELD}"
    for finding in data["findings"]:
        finding["sop_instance_uid"] = keys.uid(finding["sop_instance_uid"])
    for instance in data["instances"]:
        instance["sop_instance_uid"] = keys.uid(instance["sop_instance_uid"])
        if instance["reason"] is not None:
            instance["reason"] = f"instance {instance['status']}: {WITHHELD}"
    for failure in data["output_failures"]:
        if failure["sop_instance_uid"]:
            failure["sop_instance_uid"] = keys.uid(failure["sop_instance_uid"])
        failure["reason"] = f"{failure['output']} not built: {WITHHELD}"
    # When the result was made is close to when the patient was imaged: shift it or drop it.
    moved = shift_timestamp(result.created, days) if days is not None else None
    data["created"] = moved or ""
    return StudyResult.model_validate(data)


def _map_feedback(
    rows: Iterable[dict[str, object]],
    keys: Keys,
    days: dict[str, int],
) -> tuple[list[str], list[str]]:
    """Feedback rows with UIDs mapped, reviewers pseudonymised, times shifted or dropped and
    free text left out (a comment may name the patient); returns the lines and the columns
    that were dropped."""
    lines: list[str] = []
    dropped: set[str] = set()
    for row in rows:
        study = str(row.get("study_instance_uid") or "")
        record: dict[str, object] = {}
        for column, value in row.items():
            if column in _FEEDBACK_UIDS:
                record[column] = keys.uid(str(value)) if value else value
            elif column in _FEEDBACK_KEPT:
                record[column] = _maybe_json(value)
            elif column in _FEEDBACK_PEOPLE:
                record[column] = keys.token("reviewer", str(value)) if value else value
            elif column in _FEEDBACK_TIMES:
                if study in days and isinstance(value, str | float):
                    record[column] = shift_timestamp(value, days[study])
                else:
                    dropped.add(column)  # a real date: only a shifted one may leave
            elif column in _FEEDBACK_TEXT:
                record[f"{column}_withheld"] = bool(value)
            else:
                dropped.add(column)
        lines.append(json.dumps(record, sort_keys=True))
    return lines, sorted(dropped)


def _maybe_json(value: object) -> object:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _manifest(
    deid: Deidentifier,
    keys: Keys,
    options: ExportOptions,
    snapshot: _Snapshot,
    dropped: list[str],
) -> dict[str, object]:
    return {
        "format": FORMAT,
        "exported_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "profile": {
            "standard": "DICOM PS3.15 Annex E, Table E.1-1",
            "name": "Basic Application Level Confidentiality Profile",
            "options": [m for _, m in deid.method_codes[1:]],
            "method_codes": [
                {"value": v, "scheme": "DCM", "meaning": m} for v, m in deid.method_codes
            ],
            "table_rows": deid.profile.standard_rows,
            "additional_rows": deid.profile.extra_rows,
            "pixels": "not cleaned: instances that may show burned-in text are quarantined",
        },
        "options": {
            "shift_dates": options.shift_dates,
            "salt": keys.source,
            "studies": "selected" if options.studies else "all",
        },
        "feedback": {
            "table": snapshot.feedback is not None,
            "dropped_columns": dropped,
        },
        "software": {"diagnostics": diagnostics.__version__, "pydicom": pydicom.__version__},
    }


def _write_lines(path: Path, lines: list[str]) -> None:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
