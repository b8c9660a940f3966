"""FHIR reports of recorded results, through the same durable outbox as the PACS destinations.

Each result version's context (patient identifier, the model's codes: `ReportContext`) is kept
in the intake database in the same transaction as the result. When a `fhir+` destination is
configured, the `preliminary` bundle is written durably beside the DICOM outputs before the
result is recorded, and `IntakeStore.complete` queues it for every FHIR destination. Marking a
study read queues a `final` bundle for the FHIR destinations its result went to, in the same
transaction as the mark. `GET /v1/studies/{uid}/fhir` builds the current bundle on demand.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydicom.dataset import Dataset

from diagnostics.dicom.header import ReadLimits
from diagnostics.dicom.reader import read_info
from diagnostics.durable import write_file
from diagnostics.errors import InputError, StoreError
from diagnostics.fhir import FhirBundleError, Reader, ReportContext, build_bundle
from diagnostics.intake.sender import FHIR_PREFIX
from diagnostics.intake.store import IntakeStore, audit_row
from diagnostics.package import Manifest
from diagnostics.results import StudyResult

log = logging.getLogger(__name__)

SCHEMA = """CREATE TABLE IF NOT EXISTS fhir_context (
    study_instance_uid TEXT NOT NULL,
    version INTEGER NOT NULL,
    context TEXT NOT NULL,
    PRIMARY KEY (study_instance_uid, version)
)"""
"""Created by the first result recorded with a context (`PreparedReport.record`); readers
treat a missing table as "no context"."""


@dataclass(frozen=True)
class PreparedReport:
    """A result's FHIR context, and its preliminary bundle when a FHIR destination wants one."""

    study_instance_uid: str
    version: int
    """The version the result will get: the next one, as only the claim holder records it."""
    context: ReportContext
    paths: tuple[Path, ...] = field(default=())

    def record(self, db: sqlite3.Connection, version: int) -> None:
        """Keep the context with the result, inside `IntakeStore.complete`'s transaction."""
        if version != self.version:  # the bundle names the wrong version: never send it
            raise StoreError(
                f"study {self.study_instance_uid}: result version {version} is being recorded "
                f"but the FHIR report was built for version {self.version}"
            )
        db.execute(SCHEMA)
        db.execute(
            "INSERT OR REPLACE INTO fhir_context VALUES (?, ?, ?)",
            (self.study_instance_uid, version, self.context.model_dump_json()),
        )


def wants_fhir(destinations: Sequence[str]) -> bool:
    return any(d.strip().startswith(FHIR_PREFIX) for d in destinations)


def prepare(
    store: IntakeStore,
    result: StudyResult,
    paths: Sequence[Path],
    manifest: Manifest | None,
    destinations: Sequence[str],
) -> PreparedReport:
    """The context of a result about to be recorded and, for FHIR destinations, its bundle.

    A bundle that does not validate or cannot be written is left out, logged and audited: the
    result is recorded without it rather than lost.
    """
    study = result.study_instance_uid
    version = store.latest_version(study) + 1
    context = ReportContext.from_header(_header(paths, store.limits), manifest)
    prepared = PreparedReport(study, version, context)
    if not wants_fhir(destinations):
        return prepared
    try:
        bundle = build_bundle(result, version, context)
        path = _write(store.results_dir / uuid.uuid4().hex, f"fhir-v{version}-preliminary", bundle)
    except (FhirBundleError, OSError) as exc:
        log.error("study %s: FHIR report not written: %s", study, exc)
        store.audit("screening-worker", "fhir_report_failed", study=study, reason=str(exc)[:300])
        return prepared
    return PreparedReport(study, version, context, (path,))


def queue_final(store: IntakeStore, db: sqlite3.Connection, study: str, actor: str) -> None:
    """Inside `mark_read`'s transaction: a `final` bundle, read by `actor`, for every FHIR
    destination the newest result went to. A bundle that cannot be built is audited, and the
    read mark stands."""
    latest = db.execute(
        "SELECT version, result FROM results WHERE study_instance_uid = ? "
        "ORDER BY version DESC LIMIT 1",
        (study,),
    ).fetchone()
    if latest is None:
        return
    version = int(latest["version"])
    destinations = [
        r["destination"]
        for r in db.execute(
            "SELECT DISTINCT destination FROM outbox WHERE study_instance_uid = ? AND version = ? "
            "AND destination LIKE ? ORDER BY destination",
            (study, version, FHIR_PREFIX + "%"),
        )
    ]
    context = _stored_context(db, study, version)
    if not destinations or context is None:
        return
    reader = _reader_at(db, study, actor)
    try:
        bundle = build_bundle(StudyResult.from_json(latest["result"]), version, context, reader)
        path = _write(store.results_dir / uuid.uuid4().hex, f"fhir-v{version}-final", bundle)
    except (FhirBundleError, OSError) as exc:
        log.error("study %s: final FHIR report not written: %s", study, exc)
        audit_row(db, actor, "fhir_report_failed", study=study, reason=str(exc)[:300])
        return
    now = time.time()
    for destination in destinations:
        db.execute(
            """INSERT INTO outbox (study_instance_uid, version, path, destination, state,
               next_attempt) VALUES (?, ?, ?, ?, 'pending', ?)""",
            (study, version, str(path), destination, now),
        )
    audit_row(db, actor, "fhir_final_queued", study=study, version=version, file=path.name)


def current_bundle(
    store: IntakeStore, study: str, manifest: Manifest | None = None
) -> tuple[int, dict[str, Any]] | None:
    """The bundle of the newest result as it stands (final once read); None before a result.

    A result recorded before reports were kept gets its context from the stored instances and
    `manifest` now.
    """
    latest = store.latest_result(study)
    if latest is None:
        return None
    version, result = latest
    db = store.connection()
    context = _stored_context(db, study, version)
    if context is None:
        paths = [path for _, path in store.instances_of(study)]
        context = ReportContext.from_header(_header(paths, store.limits), manifest)
    return version, build_bundle(result, version, context, _reader(db, study, version))


def _stored_context(db: sqlite3.Connection, study: str, version: int) -> ReportContext | None:
    try:
        row = db.execute(
            "SELECT context FROM fhir_context WHERE study_instance_uid = ? AND version = ?",
            (study, version),
        ).fetchone()
    except sqlite3.OperationalError as exc:  # a store that has recorded no report yet
        if "no such table" in str(exc):
            return None
        raise StoreError(f"cannot read the FHIR report context: {exc}") from exc
    return ReportContext.model_validate_json(row["context"]) if row is not None else None


def _reader(db: sqlite3.Connection, study: str, version: int) -> Reader | None:
    """Who read this result version: the last read mark, if it is not older than the result."""
    row = db.execute(
        """SELECT s.reviewed_at, r.created FROM studies s JOIN results r
           ON r.study_instance_uid = s.study_instance_uid AND r.version = ?
           WHERE s.study_instance_uid = ?""",
        (version, study),
    ).fetchone()
    if row is None or row["reviewed_at"] is None or row["reviewed_at"] < row["created"]:
        return None
    mark = db.execute(
        "SELECT actor FROM audit WHERE action = 'study_read' "
        "AND json_extract(detail, '$.study') = ? ORDER BY id DESC LIMIT 1",
        (study,),
    ).fetchone()
    return _reader_at(db, study, mark["actor"] if mark is not None else "unknown")


def _reader_at(db: sqlite3.Connection, study: str, actor: str) -> Reader:
    row = db.execute(
        "SELECT reviewed_at FROM studies WHERE study_instance_uid = ?", (study,)
    ).fetchone()
    at = float(row["reviewed_at"]) if row is not None and row["reviewed_at"] else time.time()
    read_at = datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds")
    return Reader(actor=actor, read_at=read_at)


def _header(paths: Sequence[Path], limits: ReadLimits) -> Dataset | None:
    """The first readable stored header (patient and study identity); None when none is."""
    for path in paths:
        try:
            return read_info(path, limits).dataset
        except (InputError, OSError):
            continue
    return None


def _write(folder: Path, name: str, bundle: dict[str, Any]) -> Path:
    """Write a bundle durably: the outbox row that points at it may be committed next."""
    folder.mkdir(parents=True, exist_ok=True)
    data = json.dumps(bundle, indent=1, sort_keys=True).encode("utf-8")
    return write_file(folder / f"{name}.json", data)
