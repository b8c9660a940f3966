"""What a store is, whatever holds it: the interface the service, the UI and the exports use.

`Store` is the live store of one storage folder: intake, the work queue with its claims and
leases, results and the worklist, the outbox, audit and feedback. `Transaction` is the set of
steps a caller composes into one unit that commits together (`Store.transaction()`), or runs
as plain reads (`Store.view()`). `Snapshot` is one consistent read-only view for the exports.

The SQLite backend (`diagnostics.store.sqlite`) and the PostgreSQL one (`diagnostics.store.
postgres`, several nodes on one database) implement these three protocols;
`diagnostics.store.open_store` chooses one from the `--database` URL.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Protocol

from diagnostics.dicom.header import ReadLimits
from diagnostics.fhir import ReportContext
from diagnostics.results import StudyResult
from diagnostics.store.accounts import ApiToken, User
from diagnostics.store.audit import AuditEntry, AuditFilter, ChainReport
from diagnostics.store.evidence import InstanceMaps
from diagnostics.store.priority import WorklistFilter
from diagnostics.store.records import (
    Claim,
    Delivery,
    Feedback,
    MonitoredResult,
    OutboxItem,
    PreparedContext,
    PurgeReport,
    Received,
    StoredInstance,
    StudyFacts,
    WorklistRow,
)

CLAIM_LEASE_S = 45.0
"""How long a claim holds without renewal. The holder renews it every third of this while it
screens, so only a claim whose process died runs out, and it is taken over within this time
(plus one poll): within the promised bound of the stable time + 60 s."""


class Transaction(Protocol):
    """Steps that commit together inside `Store.transaction()`."""

    def audit(self, actor: str, action: str, **detail: object) -> None: ...

    def last_actor(self, action: str, study_instance_uid: str) -> str | None: ...

    def requested_priority(self, study_instance_uid: str) -> tuple[bool, str | None]: ...

    def set_requested_priority(self, study_instance_uid: str, priority: str | None) -> None: ...

    def set_reviewed(self, study_instance_uid: str, at: float | None) -> bool: ...

    def reviewed_at(self, study_instance_uid: str) -> float | None: ...

    def read_since_result(self, study_instance_uid: str, version: int) -> bool: ...

    def newest_result_version(self, study_instance_uid: str) -> int | None: ...

    def result_version(self, study_instance_uid: str, version: int) -> StudyResult | None: ...

    def record_fhir_context(
        self, study_instance_uid: str, version: int, context: ReportContext
    ) -> None: ...

    def fhir_context(self, study_instance_uid: str, version: int) -> ReportContext | None: ...

    def destinations_of(self, study_instance_uid: str, version: int, prefix: str) -> list[str]: ...

    def queue(
        self, study_instance_uid: str, version: int, path: Path, destination: str
    ) -> None: ...

    def add_feedback(self, entry: Feedback) -> int: ...

    def feedback_for(self, study_instance_uid: str) -> list[Feedback]: ...


class Store(Protocol):
    """The live store under one storage root (see the module docstring)."""

    root: Path
    instances_dir: Path
    results_dir: Path
    """Where screening writes its outputs, a fresh folder per screening."""
    limits: ReadLimits
    lease_s: float

    # -- intake and stored instances
    def receive(
        self,
        data: bytes,
        source: str,
        requested_priority: str | None = None,
        address: str | None = None,
    ) -> Received: ...

    def instances_of(self, study_instance_uid: str) -> list[tuple[str, Path]]: ...

    def instance_path(self, study_instance_uid: str, sop_instance_uid: str) -> Path | None: ...

    # -- the work queue
    def recover(self, stray_age_s: float = 3600.0) -> int: ...

    def claim_due(self, stable_s: float, limit: int = 8) -> list[Claim]: ...

    def claim_study(self, study_instance_uid: str) -> Claim | None: ...

    def renew(self, claims: Sequence[Claim]) -> list[Claim]: ...

    def complete(
        self,
        claim: Claim,
        result: StudyResult,
        deliveries: Sequence[Delivery] = (),
        maps: Sequence[InstanceMaps] = (),
        context: PreparedContext | None = None,
    ) -> int | None: ...

    def release(self, claim: Claim, *, failed: bool = False) -> None: ...

    # -- results and the worklist
    def latest_version(self, study_instance_uid: str) -> int: ...

    def latest_result(self, study_instance_uid: str) -> tuple[int, StudyResult] | None: ...

    def result_version(self, study_instance_uid: str, version: int) -> StudyResult | None: ...

    def study_state(self, study_instance_uid: str) -> dict[str, object] | None: ...

    def study_facts(self, study_instance_uids: Sequence[str]) -> dict[str, StudyFacts]: ...

    def worklist(
        self,
        *,
        status: str | None = None,
        finding: str | None = None,
        limit: int = 50,
        offset: int = 0,
        where: WorklistFilter | None = None,
        now: float | None = None,
        escalate_after_s: float = 3600.0,
    ) -> tuple[int, list[WorklistRow]]: ...

    def class_maps(self, study_instance_uid: str, version: int) -> list[InstanceMaps]: ...

    def feedback_for(self, study_instance_uid: str) -> list[Feedback]: ...

    def counts(self) -> dict[str, int]: ...

    def monitored_results(self, since: float) -> list[MonitoredResult]:
        """Each study's current result recorded at or after `since` (epoch seconds), with its
        latest agree/disagree/missed verdict per finding; bounded by the window (monitoring)."""
        ...

    # -- the outbox
    def due_outbox(self, limit: int = 16) -> list[OutboxItem]: ...

    def claim_outbox(self, limit: int = 16, lease_s: float = ...) -> list[OutboxItem]: ...

    def release_outbox(self, items: Sequence[OutboxItem]) -> None: ...

    def mark_sent(self, item: OutboxItem) -> None: ...

    def mark_failed(self, item: OutboxItem, error: str, retry_in_s: float) -> None: ...

    # -- retention
    def purge(
        self,
        cutoff: float,
        *,
        dry_run: bool = False,
        actor: str = "retention",
        leftovers: bool = True,
    ) -> PurgeReport: ...

    # -- audit, units of work, life
    def audit(self, actor: str, action: str, **detail: object) -> None: ...

    def audit_entries(self, action: str | None = None) -> list[dict[str, object]]: ...

    def audit_page(
        self, where: AuditFilter, limit: int, offset: int = 0
    ) -> tuple[int, list[AuditEntry]]: ...

    def verify_audit(self) -> ChainReport: ...

    def transaction(self) -> AbstractContextManager[Transaction]: ...

    def view(self) -> Transaction: ...

    def wait_for_work(self, timeout_s: float) -> bool: ...

    def close(self) -> None: ...


class Snapshot(Protocol):
    """One consistent read-only view of a store (`diagnostics.store.read_snapshot`)."""

    def instances(self) -> list[StoredInstance]: ...

    def instances_of(self, study_instance_uid: str) -> list[tuple[str, Path]]: ...

    def latest_results(self) -> list[tuple[str, str]]: ...

    def results_of(self, study_instance_uid: str) -> list[tuple[int, str]]: ...

    def feedback_rows(self) -> list[dict[str, object]] | None: ...

    def monitored_results(self, since: float) -> list[MonitoredResult]: ...


class UserStore(Protocol):
    """Named users and API tokens (`diagnostics.store.accounts`). Every change commits with its
    audit row; reads are per request, so a change takes effect without a restart."""

    def user(self, name: str) -> User | None: ...

    def users(self) -> list[User]: ...

    def has_users(self) -> bool: ...

    def add_user(self, name: str, role: str, password: str, actor: str) -> None: ...

    def set_disabled(self, name: str, disabled: bool, actor: str) -> None: ...

    def set_password(self, name: str, password: str, actor: str) -> None: ...

    def sign_in_failed(self, name: str, limit: int, lock_s: float, now: float) -> bool: ...

    def set_language(self, name: str, language: str) -> None: ...

    def signed_in(self, name: str, now: float) -> None: ...

    def tokens(self) -> list[ApiToken]: ...

    def add_token(self, name: str, digest: str, actor: str) -> None: ...

    def revoke_token(self, name: str, actor: str) -> None: ...

    def token_named(self, digest: str) -> str | None: ...

    def token_used(self, name: str, now: float) -> None: ...
