"""Background loops: screen studies that have gone quiet, and deliver results through the outbox.

Both loops are plain threads that poll the intake store, so several processes can share one
store and a restart simply carries on where the database says things stand.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

from diagnostics.errors import DiagnosticsError, ReportError
from diagnostics.intake import fhir_reports
from diagnostics.intake.evidence import InstanceMaps
from diagnostics.intake.sender import Destination, SendError, send
from diagnostics.intake.store import Claim, IntakeStore, OutboxItem
from diagnostics.reports import WrittenReports, write_reports
from diagnostics.results import OutputFailure, StudyResult
from diagnostics.screening import Screener, ScreeningOutcome, with_output_failures

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 300.0
ERROR_PAUSE_S = 5.0


def backoff(attempts: int) -> float:
    """Seconds to wait before the next try after `attempts` failures: 2, 4, 8 … 300."""
    return float(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1)))


class _Loop:
    """A polling thread that stops promptly and finishes the item in hand first."""

    name = "loop"

    def __init__(self, poll_s: float) -> None:
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.alive_at = time.monotonic()
        """When the loop last came round: a readiness probe can tell a stuck loop."""

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                busy = self.run_once()
            except DiagnosticsError as exc:
                log.error("%s: %s", self.name, exc)
                busy = False
            # The thread's top level: an unexpected error must not end the loop silently (the
            # queue would stop while the service looks healthy). Log it, pause, carry on.
            except Exception:
                log.exception("%s: unexpected error; retrying in %.0f s", self.name, ERROR_PAUSE_S)
                self._stop.wait(ERROR_PAUSE_S)
                busy = False
            self.alive_at = time.monotonic()
            if not busy:
                self._stop.wait(self.poll_s)

    def run_once(self) -> bool:
        raise NotImplementedError


class ScreeningWorker(_Loop):
    """Claims studies quiet for `stable_s`, screens them, records results and queues outputs."""

    name = "screening-worker"

    def __init__(
        self,
        store: IntakeStore,
        screener: Screener,
        *,
        stable_s: float,
        destinations: Sequence[str],
        poll_s: float = 0.5,
        on_result: Callable[[Claim, int, float], None] | None = None,
    ) -> None:
        super().__init__(poll_s)
        self.store = store
        self.screener = screener
        self.stable_s = stable_s
        self.destinations = list(destinations)
        self.on_result = on_result

    def run_once(self) -> bool:
        claims = self.store.claim_due(self.stable_s)
        for index, claim in enumerate(claims):
            if self.stopping:
                for rest in claims[index:]:
                    self.store.release(rest)  # requeued, not lost
                break
            try:
                self.screen_claim(claim)
            except DiagnosticsError as exc:
                # e.g. the database stayed locked: give the study back rather than strand it.
                log.error("study %s not recorded: %s", claim.study_instance_uid, exc)
                self.store.release(claim)
        return bool(claims)

    def screen_claim(self, claim: Claim) -> None:
        """Screen one claimed study and record the result, whatever happens to it.

        Every claim ends in a recorded result (a `failed` one when screening could not run),
        so no study is left claimed and none loops forever.
        """
        started = time.perf_counter()
        outcome, outputs = self._write_outputs(claim, self._screen(claim))
        report = fhir_reports.prepare(
            self.store,
            outcome.result,
            claim.paths,
            self.screener.package.manifest,
            self.destinations,
        )
        recorded = self.store.complete(
            claim,
            outcome.result,
            [*outputs, *report.paths],
            self.destinations,
            maps=class_maps(outcome),
            on_record=report.record,
        )
        if recorded is None:
            log.info(
                "study %s changed while screening; it will be screened again",
                claim.study_instance_uid,
            )
            return
        model = self.screener.model_ref
        self.store.audit(
            "screening-worker",
            "study_screened",
            study=claim.study_instance_uid,
            version=recorded,
            status=outcome.result.status,
            model=f"{model.name} {model.version} {model.sha256[:12]}",
            outputs=[p.name for p in (*outputs, *report.paths)],
        )
        if self.on_result is not None:
            self.on_result(claim, recorded, time.perf_counter() - started)

    def _screen(self, claim: Claim) -> ScreeningOutcome:
        try:
            batch = self.screener.screen(list(claim.paths))
        except DiagnosticsError as exc:
            return self._failed(claim, f"screening could not run: {exc}")
        problems = "; ".join(str(r.error) for r in batch.rejected)
        for outcome in batch.outcomes:
            if outcome.result.study_instance_uid != claim.study_instance_uid:
                continue
            if batch.rejected or len(outcome.result.instances) != len(claim.paths):
                # An acknowledged image the model cannot see: never report the rest as the study.
                return self._failed(claim, f"stored instances could not be read: {problems}")
            return outcome
        return self._failed(
            claim, f"the stored instances could not be read: {problems or 'none found'}"
        )

    def _failed(self, claim: Claim, reason: str) -> ScreeningOutcome:
        log.error("study %s failed: %s", claim.study_instance_uid, reason)
        result = StudyResult(
            study_instance_uid=claim.study_instance_uid,
            status="failed",
            reason=reason,
            model=self.screener.model_ref,
        )
        return ScreeningOutcome(result)

    def _write_outputs(
        self, claim: Claim, outcome: ScreeningOutcome
    ) -> tuple[ScreeningOutcome, list[Path]]:
        """The DICOM outputs; an output that cannot be built is named in the result, which
        still stands without it."""
        # A folder per screening, never shared: a second process screening the same study
        # (after a lease ran out) cannot overwrite files an outbox row points at.
        try:
            written = write_reports(outcome, self.store.results_dir / uuid.uuid4().hex)
        except ReportError as exc:
            failures = [OutputFailure(output="sr", reason=str(exc))]
            written = WrittenReports(failures=failures)
        if written.failures:
            log.error(
                "study %s: %d DICOM output(s) not built",
                claim.study_instance_uid,
                len(written.failures),
            )
            self.store.audit(
                "screening-worker",
                "reports_failed",
                study=claim.study_instance_uid,
                outputs=[f.output for f in written.failures],
            )
            outcome = with_output_failures(outcome, written.failures)
        return outcome, written.paths


def class_maps(outcome: ScreeningOutcome) -> list[InstanceMaps]:
    """The heatmap evidence of each analysed image, kept with the result for the review page."""
    if outcome.package is None:
        return []
    codes = tuple(outcome.package.manifest.finding_codes)
    return [
        InstanceMaps(item.image.uids.sop_instance_uid, item.frame, codes, item.cams)
        for item in outcome.analysed
    ]


class OutboxWorker(_Loop):
    """Sends queued results; failures are retried with exponential backoff, forever."""

    name = "outbox-worker"

    def __init__(
        self,
        store: IntakeStore,
        *,
        calling_ae: str,
        token: str | None = None,
        auth_file: Path | None = None,
        poll_s: float = 1.0,
        sender: Callable[[Path, Destination], None] | None = None,
    ) -> None:
        super().__init__(poll_s)
        self.store = store
        self.calling_ae = calling_ae
        self.token = token
        self.auth_file = auth_file
        self._send = sender or self._default_send

    def _default_send(self, path: Path, destination: Destination) -> None:
        send(
            path,
            destination,
            calling_ae=self.calling_ae,
            token=self.token,
            auth_file=self.auth_file,
        )

    def run_once(self) -> bool:
        items = self.store.due_outbox()
        for item in items:
            if self.stopping:
                break
            self._deliver(item)
        return bool(items)

    def _deliver(self, item: OutboxItem) -> None:
        try:
            self._send(item.path, Destination.parse(item.destination))
        except (SendError, OSError) as exc:
            wait = backoff(item.attempts + 1)
            log.warning("outbox: %s (retry in %.0f s)", exc, wait)
            self.store.mark_failed(item, str(exc), wait)
            return
        self.store.mark_sent(item)
        self.store.audit(
            "outbox-worker",
            "result_sent",
            study=item.study_instance_uid,
            file=item.path.name,
            destination=item.destination,
        )
