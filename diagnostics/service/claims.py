"""Screening one claimed study, whatever fails: the one code path of the background worker and
of the synchronous `POST /v1/screen`.

A claimed study must end with a recorded result, or be given back to the queue, whatever goes
wrong after the claim: reading the images, the model, the DICOM outputs or the database. This
module is therefore the top level of a screening job (run by the worker's thread or by a
request's screening thread), and the one place besides a thread's run loop that catches every
exception: an unforeseen error becomes a `failed` result a person can act on, its traceback
goes to the log once, and the study never stays `screening`.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

from diagnostics.errors import DiagnosticsError, ReportError
from diagnostics.i18n import DEFAULT_LANGUAGE, Language
from diagnostics.reports import WrittenReports, write_reports
from diagnostics.results import OutputFailure, StudyResult
from diagnostics.screening import Screener, ScreeningOutcome, with_output_failures
from diagnostics.service import fhir_reports
from diagnostics.service.logs import enter_study, leave_study, study_fields
from diagnostics.service.reasons import plain, result_without_paths
from diagnostics.service.sender import carries
from diagnostics.store import Store
from diagnostics.store.evidence import InstanceMaps
from diagnostics.store.records import Claim, Delivery

log = logging.getLogger(__name__)

MAX_TRIES = 3
"""Claims of one study that may end without a result (the service died or could not record
it) before the study is failed instead of being tried again."""


class Leases:
    """The claims this process holds, renewed in the background while they are screened.

    Only a claim whose process died stops being renewed, so only such a claim runs out and is
    taken over (`Store.claim_due`) within one lease.
    """

    def __init__(self, store: Store, every_s: float | None = None) -> None:
        self.store = store
        self.every_s = every_s if every_s is not None else store.lease_s / 3
        self._held: dict[tuple[str, float], Claim] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, claim: Claim) -> None:
        with self._lock:
            self._held[(claim.study_instance_uid, claim.claimed_at)] = claim

    def drop(self, claim: Claim) -> None:
        with self._lock:
            self._held.pop((claim.study_instance_uid, claim.claimed_at), None)

    def held(self) -> list[Claim]:
        with self._lock:
            return list(self._held.values())

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="claim-leases", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def release_all(self) -> int:
        """At shutdown: give back every claim still held (not counted as a try); a claim that
        cannot be given back is left to its lease."""
        released = 0
        for claim in self.held():
            try:
                self.store.release(claim)
            except DiagnosticsError as exc:
                log.error("study %s left to its lease: %s", claim.study_instance_uid, exc)
                continue
            self.drop(claim)
            released += 1
        return released

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                lost = self.store.renew(self.held())
            except DiagnosticsError as exc:
                log.error("claim leases not renewed: %s", exc)
                continue
            # The thread's top level: renewal must go on whatever one round hit.
            except Exception:
                log.exception("claim leases: unexpected error")
                continue
            for claim in lost:
                log.warning("study %s: claim lost while screening", claim.study_instance_uid)


DICOM_OUTPUT = Path("SR.dcm")
"""Any DICOM output: the destinations that carry one are PACSs (`sender.carries`)."""

Recorded = Callable[[Claim, int, float], None]
"""Called after a result is recorded: (claim, version, seconds spent)."""

AfterRecorded = Callable[[Claim, int, ScreeningOutcome, Screener], None]
"""Called after a result is recorded: (claim, version, outcome, the screener that made it)."""


class ClaimScreening:
    """Screens claimed studies and records their results: shared by every screening path."""

    def __init__(
        self,
        store: Store,
        screener: Screener,
        destinations: Sequence[str],
        *,
        leases: Leases | None = None,
        actor: str = "screening-worker",
        report_language: Language = DEFAULT_LANGUAGE,
    ) -> None:
        self.store = store
        self.screener = screener
        self.destinations = list(destinations)
        self.report_language: Language = report_language
        self.leases = leases
        self.actor = actor
        self.stopping = threading.Event()
        """Set at shutdown: a screening that fails then may have failed *because* the service
        is stopping (its threads are going), so it is given back instead of recorded."""
        self._listeners: list[Callable[[Claim, int | None], None]] = []
        self._recorded: list[AfterRecorded] = []

    def on_recorded(self, listener: AfterRecorded) -> None:
        """`listener(claim, version, outcome, screener)` after a result is recorded (the shadow
        model's turn); what it raises is logged, never the study's failure."""
        self._recorded.append(listener)

    def on_finished(self, listener: Callable[[Claim, int | None], None]) -> None:
        """`listener(claim, version)` after every claim ends: version None when it was given
        back or no longer ours (e.g. to wake requests waiting on the study)."""
        self._listeners.append(listener)

    def screen_claim(self, claim: Claim, on_result: Recorded | None = None) -> int | None:
        """Screen one claimed study and record its result; return the new version.

        Returns None when the study was not recorded: it changed while being screened (it will
        be screened again), the claim was taken over, or the database could not record it
        (then the claim is given back, counted as a try). Never raises for the study's sake.
        """
        started = time.perf_counter()
        context = enter_study(claim.study_instance_uid)  # its id on every line meanwhile
        if self.leases is not None:
            self.leases.hold(claim)
        version: int | None = None
        try:
            version = self._screen_and_record(claim, started)
        except DiagnosticsError as exc:
            log.error(
                "study %s not recorded: %s",
                claim.study_instance_uid,
                exc,
                extra=study_fields(claim.study_instance_uid, "study_not_recorded"),
            )
            self._give_back(claim)
        except Exception:  # the job's top level (module docstring)
            log.exception(
                "study %s not recorded: unexpected error",
                claim.study_instance_uid,
                extra=study_fields(claim.study_instance_uid, "study_not_recorded"),
            )
            self._give_back(claim)
        finally:
            if self.leases is not None:
                self.leases.drop(claim)
            leave_study(context)
        if version is not None and on_result is not None:
            on_result(claim, version, time.perf_counter() - started)
        for listener in self._listeners:
            listener(claim, version)
        return version

    def _give_back(self, claim: Claim) -> None:
        try:
            self.store.release(claim, failed=True)
        except DiagnosticsError as exc:  # the database is down: the lease runs out instead
            log.error("study %s left to its lease: %s", claim.study_instance_uid, exc)

    def _screen_and_record(self, claim: Claim, started: float) -> int | None:
        # One screener for the whole claim: the registry may swap `self.screener` meanwhile
        # (a promotion), and a result must name the model that made it.
        screener = self.screener
        if claim.tries > MAX_TRIES:
            outcome = self._failed(
                screener,
                claim,
                f"screening this study was interrupted {claim.tries - 1} times (the service "
                "stopped, or could not record the result, while screening it); not retried: "
                "the service log says why",
            )
            outputs: list[Path] = []
        else:
            outcome = self._screen(screener, claim)
            # Instance reasons name the stored files; the server's folders stay out of results.
            outcome = replace(outcome, result=result_without_paths(outcome.result))
            if outcome.result.status == "failed" and self.stopping.is_set():
                log.warning(
                    "study %s given back: screening ended by shutdown",
                    claim.study_instance_uid,
                    extra=study_fields(claim.study_instance_uid, "study_given_back"),
                )
                self.store.release(claim)
                return None
            outcome, outputs = self._write_outputs(claim, outcome)
        report = fhir_reports.prepare(
            self.store,
            outcome.result,
            claim.paths,
            screener.package.manifest,
            self.destinations,
            self.report_language,
        )
        outputs = [*outputs, *report.paths]
        recorded = self.store.complete(
            claim,
            outcome.result,
            deliveries(outputs, self.destinations),
            maps=class_maps(outcome),
            context=report.recorded(),
        )
        if recorded is None:
            log.info(
                "study %s changed while screening; it will be screened again",
                claim.study_instance_uid,
            )
            return None
        model = screener.model_ref
        try:
            self.store.audit(
                self.actor,
                "study_screened",
                study=claim.study_instance_uid,
                version=recorded,
                status=outcome.result.status,
                model=f"{model.name} {model.version} {model.sha256[:12]}",
                outputs=[p.name for p in outputs],
            )
        except DiagnosticsError as exc:  # the result stands; only its audit line is missing
            log.error("study %s: audit not written: %s", claim.study_instance_uid, exc)
        seconds = time.perf_counter() - started
        log.info(
            "study %s screened: %s by %s %s in %.2f s (result version %d, %d outputs)",
            claim.study_instance_uid,
            outcome.result.status,
            model.name,
            model.version,
            seconds,
            recorded,
            len(outputs),
            extra=study_fields(
                claim.study_instance_uid,
                "study_screened",
                status=outcome.result.status,
                model_name=model.name,
                model_version=model.version,
                duration_s=round(seconds, 3),
                result_version=recorded,
                outputs=len(outputs),
                instances=len(claim.paths),
            ),
        )
        for listener in self._recorded:
            try:
                listener(claim, recorded, outcome, screener)
            except Exception:  # an observer's failure is never the study's (shadow runs)
                log.exception("study %s: after-result hook failed", claim.study_instance_uid)
        return recorded

    def _screen(self, screener: Screener, claim: Claim) -> ScreeningOutcome:
        try:
            batch = screener.screen(list(claim.paths))
        except DiagnosticsError as exc:
            return self._failed(screener, claim, f"screening could not run: {exc}")
        except Exception as exc:  # the job's top level (module docstring)
            log.exception("study %s: screening failed unexpectedly", claim.study_instance_uid)
            return self._failed(
                screener,
                claim,
                f"screening failed with an internal error ({type(exc).__name__}); the study "
                "was not analysed: the service log has the details",
            )
        problems = "; ".join(str(r.error) for r in batch.rejected)
        for outcome in batch.outcomes:
            if outcome.result.study_instance_uid != claim.study_instance_uid:
                continue
            if batch.rejected or len(outcome.result.instances) != len(claim.paths):
                # An acknowledged image the model cannot see: never report the rest as the study.
                return self._failed(
                    screener, claim, f"stored instances could not be read: {problems}"
                )
            return outcome
        return self._failed(
            screener, claim, f"the stored instances could not be read: {problems or 'none found'}"
        )

    def _failed(self, screener: Screener, claim: Claim, reason: str) -> ScreeningOutcome:
        reason = plain(reason)
        log.error(
            "study %s failed: %s",
            claim.study_instance_uid,
            reason,
            extra=study_fields(claim.study_instance_uid, "study_failed"),
        )
        result = StudyResult(
            study_instance_uid=claim.study_instance_uid,
            status="failed",
            reason=reason,
            model=screener.model_ref,
        )
        return ScreeningOutcome(result)

    def _write_outputs(
        self, claim: Claim, outcome: ScreeningOutcome
    ) -> tuple[ScreeningOutcome, list[Path]]:
        """The DICOM outputs; an output that cannot be built is named in the result, which
        still stands without it. None without a PACS destination: nothing would read them, and
        building them is most of a screening's time (`diagnostics bench --service`)."""
        if not any(carries(destination, DICOM_OUTPUT) for destination in self.destinations):
            return outcome, []
        # A folder per screening, never shared: a second process screening the same study
        # (after a lease ran out) cannot overwrite files an outbox row points at.
        try:
            written = write_reports(outcome, self.store.results_dir / uuid.uuid4().hex)
        except ReportError as exc:
            written = WrittenReports(failures=[OutputFailure(output="sr", reason=plain(str(exc)))])
        except Exception as exc:  # the job's top level (module docstring)
            log.exception("study %s: DICOM outputs failed unexpectedly", claim.study_instance_uid)
            reason = f"internal error ({type(exc).__name__}): the service log has the details"
            written = WrittenReports(failures=[OutputFailure(output="sr", reason=reason)])
        if written.failures:
            log.error(
                "study %s: %d DICOM output(s) not built",
                claim.study_instance_uid,
                len(written.failures),
            )
            self.store.audit(
                self.actor,
                "reports_failed",
                study=claim.study_instance_uid,
                outputs=[f.output for f in written.failures],
            )
            failures = [f.model_copy(update={"reason": plain(f.reason)}) for f in written.failures]
            outcome = with_output_failures(outcome, failures)
        return outcome, written.paths


def deliveries(outputs: Sequence[Path], destinations: Sequence[str]) -> list[Delivery]:
    """Each output for every destination that carries it (`sender.carries`)."""
    return [
        Delivery(destination, path)
        for destination in destinations
        for path in outputs
        if carries(destination, path)
    ]


def class_maps(outcome: ScreeningOutcome) -> list[InstanceMaps]:
    """The heatmap evidence of each analysed image, kept with the result for the review page."""
    if outcome.package is None:
        return []
    codes = tuple(outcome.package.manifest.finding_codes)
    return [
        InstanceMaps(item.image.uids.sop_instance_uid, item.frame, codes, item.cams)
        for item in outcome.analysed
    ]
