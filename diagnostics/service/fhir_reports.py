"""FHIR reports of recorded results, through the same durable outbox as the PACS destinations.

Each result version's context (patient identifier, the model's codes: `ReportContext`) is kept
in the store in the same transaction as the result. When a `fhir+` destination is configured,
the `preliminary` bundle is written durably beside the DICOM outputs before the result is
recorded, and `Store.complete` queues it for every FHIR destination. Marking a
study read queues a `final` bundle for the FHIR destinations its result went to, in the same
transaction as the mark. `GET /v1/studies/{uid}/fhir` builds the current bundle on demand.
"""

from __future__ import annotations

import json
import logging
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
from diagnostics.errors import InputError
from diagnostics.fhir import FhirBundleError, Reader, ReportContext, build_bundle
from diagnostics.i18n import DEFAULT_LANGUAGE, Language
from diagnostics.package import Manifest
from diagnostics.results import StudyResult
from diagnostics.service.sender import FHIR_PREFIX
from diagnostics.store import Store, Transaction
from diagnostics.store.records import PreparedContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PreparedReport:
    """A result's FHIR context, and its preliminary bundle when a FHIR destination wants one."""

    study_instance_uid: str
    version: int
    """The version the result will get: the next one, as only the claim holder records it."""
    context: ReportContext
    paths: tuple[Path, ...] = field(default=())

    def recorded(self) -> PreparedContext:
        """The context as `Store.complete` records it with the result (for this version only)."""
        return PreparedContext(self.version, self.context)


def wants_fhir(destinations: Sequence[str]) -> bool:
    return any(d.strip().startswith(FHIR_PREFIX) for d in destinations)


def prepare(
    store: Store,
    result: StudyResult,
    paths: Sequence[Path],
    manifest: Manifest | None,
    destinations: Sequence[str],
    language: Language = DEFAULT_LANGUAGE,
) -> PreparedReport:
    """The context of a result about to be recorded and, for FHIR destinations, its bundle,
    written in `language` (recorded in the context: the final report keeps it).

    A bundle that does not validate or cannot be written is left out, logged and audited: the
    result is recorded without it rather than lost.
    """
    study = result.study_instance_uid
    version = store.latest_version(study) + 1
    context = ReportContext.from_header(_header(paths, store.limits), manifest, language)
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


def queue_final(store: Store, tx: Transaction, study: str, actor: str) -> None:
    """Inside `mark_read`'s transaction: a `final` bundle, read by `actor`, for every FHIR
    destination the newest result went to. A bundle that cannot be built is audited, and the
    read mark stands."""
    version = tx.newest_result_version(study)
    if version is None:
        return
    destinations = tx.destinations_of(study, version, FHIR_PREFIX)
    context = tx.fhir_context(study, version)
    if not destinations or context is None:
        return
    reader = _reader_at(tx, study, actor)
    result = tx.result_version(study, version)
    if result is None:  # not possible: the newest version, read in this transaction
        return
    try:
        bundle = build_bundle(result, version, context, reader)
        path = _write(store.results_dir / uuid.uuid4().hex, f"fhir-v{version}-final", bundle)
    except (FhirBundleError, OSError) as exc:
        log.error("study %s: final FHIR report not written: %s", study, exc)
        tx.audit(actor, "fhir_report_failed", study=study, reason=str(exc)[:300])
        return
    for destination in destinations:
        tx.queue(study, version, path, destination)
    tx.audit(actor, "fhir_final_queued", study=study, version=version, file=path.name)


def current_bundle(
    store: Store,
    study: str,
    manifest: Manifest | None = None,
    language: Language = DEFAULT_LANGUAGE,
) -> tuple[int, dict[str, Any]] | None:
    """The bundle of the newest result as it stands (final once read); None before a result.

    It is in the language its context recorded. A result recorded before reports were kept gets
    its context from the stored instances and `manifest` now, and `language`.
    """
    latest = store.latest_result(study)
    if latest is None:
        return None
    version, result = latest
    view = store.view()
    context = view.fhir_context(study, version)
    if context is None:
        paths = [path for _, path in store.instances_of(study)]
        context = ReportContext.from_header(_header(paths, store.limits), manifest, language)
    return version, build_bundle(result, version, context, _reader(view, study, version))


def _reader(tx: Transaction, study: str, version: int) -> Reader | None:
    """Who read this result version: the last read mark, if it is not older than the result."""
    if not tx.read_since_result(study, version):
        return None
    return _reader_at(tx, study, tx.last_actor("study_read", study) or "unknown")


def _reader_at(tx: Transaction, study: str, actor: str) -> Reader:
    at = tx.reviewed_at(study) or time.time()
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
