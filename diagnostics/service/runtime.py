"""The running service's engine room: store, screener, listener and background loops.

The HTTP layer (diagnostics.serving) and `diagnostics serve` both drive this object. Several
HTTP worker processes may share one storage folder; the DICOM listener and the background loops
run in exactly one of them, the one that holds the storage folder's lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
import signal
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO

from diagnostics.constants import LEAD_LOCK_FILE, host_in_url
from diagnostics.dicom.reader import Source
from diagnostics.errors import InputError, StoreError
from diagnostics.package.registry import ModelRegistry
from diagnostics.results import StudyResult
from diagnostics.screening import ScreenBatch, Screener
from diagnostics.service.claims import ClaimScreening, Leases
from diagnostics.service.listener import DicomListener
from diagnostics.service.logs import log_stored
from diagnostics.service.models import ModelSwitch
from diagnostics.service.retention import DiskWatermark, RetentionJob
from diagnostics.service.settings import ServiceSettings
from diagnostics.service.workers import OutboxWorker, ScreeningWorker
from diagnostics.store import open_store, postgres_url
from diagnostics.store.records import Claim, Received

log = logging.getLogger(__name__)

BATCH_WAIT_S = 0.01
"""How long a model call waits for concurrent requests to join it (adaptive batching)."""

SHUTDOWN_GRACE_S = 3.0
"""How long `stop` lets screenings in hand finish; the rest are given back to the queue."""

RECHECK_S = 1.0
"""A request waiting on a study is woken by screenings in this process; one screened by another
process (several HTTP workers) cannot wake it, so the store is read again this often."""


@dataclass(frozen=True)
class InstanceOutcome:
    """What happened to one uploaded instance (the STOW-RS response is built from these)."""

    index: int
    received: Received | None
    error: InputError | StoreError | None


def store_is_shared(database: str | None, storage: Path) -> bool:
    """Whether the store's tables are in a database several nodes share (PostgreSQL)."""
    return postgres_url(database, storage) is not None


def lead_lock_name(config: ServiceSettings) -> str:
    """The lead lock's file in the storage folder. With SQLite one per storage folder (one node
    owns the database); with a shared PostgreSQL one per node (host and HTTP port), so several
    nodes each run their listener and loops, and claims keep them from doing a study twice."""
    if not store_is_shared(config.database_url, config.storage):
        return LEAD_LOCK_FILE
    stem, _, suffix = LEAD_LOCK_FILE.rpartition(".")
    return f"{stem}-{socket.gethostname()}-{config.port}.{suffix}"


class Runtime:
    """Owns the service's moving parts; `start` loads and warms the model before `ready`."""

    def __init__(
        self,
        config: ServiceSettings,
        *,
        on_batch: Callable[[ScreenBatch], None] | None = None,
        on_received: Callable[[Received, str], None] | None = None,
    ) -> None:
        """`on_batch` sees every screening batch (stage timings, outcomes) and `on_received`
        every instance the DICOM listener stores: hooks for metrics, called in worker threads."""
        self.config = config
        self.on_batch = on_batch
        self.on_received = on_received
        self.store = open_store(
            config.storage,
            limits=config.read_limits(),
            lease_s=config.lease_seconds,
            database=config.database_url,
        )
        self.leases = Leases(self.store)
        self.disk = DiskWatermark(config.storage, config.min_free_disk)
        """Intake refuses new instances while free disk is under `--min-free-disk`."""
        self.retention: RetentionJob | None = None
        self.screener: Screener | None = None
        self.screening: ClaimScreening | None = None
        self.listener: DicomListener | None = None
        self.models: ModelSwitch | None = None
        self.loops: list[ScreeningWorker | OutboxWorker] = []
        self._lock_file: IO[str] | None = None
        self._ready = threading.Event()
        self._stopping = threading.Event()
        self._finished = threading.Condition()
        self._generation = 0
        """Screenings finished in this process, so a waiting request knows it missed none."""
        self._requests: set[threading.Thread] = set()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Load, verify and warm the registry's active model (`--model` is installed and made
        active when new: `ModelRegistry.adopt`); then, in one process only, listen and work."""
        self.models = ModelSwitch(ModelRegistry(self.config.storage), self._load, self._swap)
        screener = self.models.start(self.config.model, actor="serve --model")
        self.screener = screener
        screening = ClaimScreening(
            self.store,
            screener,
            self.config.results_to,
            leases=self.leases,
            report_language=self.config.report_language,
        )
        screening.on_finished(self._wake)
        screening.on_recorded(self.models.shadow.submit)
        self.screening = screening
        self.leases.start()
        if self._take_lead():
            requeued = self.store.recover()
            if requeued:
                log.warning("requeued %d studies interrupted by the last shutdown", requeued)
            self._start_background(screening)
        self._ready.set()

    def _load(self, path: Path) -> Screener:
        """A verified, warmed screener for an installed package (the registry's swaps too)."""
        screener = Screener.load(
            path,
            batch_wait_s=BATCH_WAIT_S,
            limits=self.config.read_limits(),
            engine=self.config.engine,
        )
        screener.warm_up()
        if self.on_batch is not None:
            screener = ObservedScreener(screener, self.on_batch)
        return screener

    def _swap(self, screener: Screener) -> None:
        """Make `screener` the active one: the next claim screens with it (between studies)."""
        self.screener = screener
        if self.screening is not None:
            self.screening.screener = screener

    def _take_lead(self) -> bool:
        handle = (self.config.storage / lead_lock_name(self.config)).open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle
        return True

    def _start_background(self, screening: ClaimScreening) -> None:
        config = self.config
        self.loops = [
            ScreeningWorker(
                self.store,
                screening.screener,
                stable_s=config.stable_seconds,
                destinations=config.results_to,
                screening=screening,
            ),
            OutboxWorker(
                self.store,
                calling_ae=config.ae_title,
                token=config.results_token,
                auth_file=config.results_auth_file,
            ),
        ]
        for loop in self.loops:
            loop.start()
        if config.retain_days is not None:
            self.retention = RetentionJob(self.store, config.retain_days)
            self.retention.start()
        self.disk.state()  # logs at start when intake is refused already
        if config.allow_ae:
            self.listener = DicomListener(
                self.store,
                ae_title=config.ae_title,
                port=config.dicom_port,
                allowed_callers=config.allow_ae,
                host=config.listen_dicom,
                accept_any_called_ae=config.accept_any_called_ae,
                ssl_context=self._tls(),
                on_received=self.on_received,
                refuse_intake=self.disk.refusal,
            )
            self.listener.start()
        else:
            log.warning("no --allow-ae given: the DICOM listener is off")

    def _tls(self) -> ssl.SSLContext | None:
        if self.config.tls_cert is None:
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.config.tls_cert, self.config.tls_key)
        return context

    @property
    def ready(self) -> bool:
        """Model loaded and warmed, and (in the lead process) the background loops running."""
        return (
            self._ready.is_set()
            and not self._stopping.is_set()
            and all(loop.running for loop in self.loops)
        )

    def ready_line(self) -> str:
        """What the service logs when it turns ready: where it listens, and as which AE."""
        config = self.config
        scheme = "https" if config.tls_cert else "http"
        http = f"{scheme}://{host_in_url(config.bind)}:{config.port}"
        if self.listener is not None:
            where = f"{host_in_url(config.listen_dicom)}:{self.listener.port}"
            dicom = f"DICOM on {where} as AE {config.ae_title}"
        elif not self.leads:
            dicom = "DICOM in the lead worker"
        else:
            dicom = "DICOM off (no --allow-ae)"
        return f"ready: HTTP on {http}, {dicom}"

    @property
    def leads(self) -> bool:
        return self._lock_file is not None

    def begin_shutdown(self) -> None:
        """Stop taking work and answer waiting requests now (202), before the HTTP server
        waits for them to finish: called on SIGTERM (`stop_on_signals`)."""
        self._stopping.set()
        if self.screening is not None:
            self.screening.stopping.set()
        for loop in self.loops:
            loop.request_stop()
        self._wake()

    def stop(self) -> None:
        """Stop taking work; let screenings in hand finish for a few seconds, then give the
        rest back to the queue (or leave them to their lease); release the lock.

        Never waits on a screening for long: a stopping service must end in seconds."""
        self.begin_shutdown()
        self._ready.clear()
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        if self.listener is not None:
            self.listener.stop()
        for loop in self.loops:
            loop.stop(max(0.1, deadline - time.monotonic()))
        if self.retention is not None:
            self.retention.stop(max(0.1, deadline - time.monotonic()))
        for thread in list(self._requests):
            thread.join(max(0.1, deadline - time.monotonic()))
        released = self.leases.release_all()
        if released:
            log.warning("gave back %d studies still being screened at shutdown", released)
        self.leases.stop()
        if self.models is not None:
            self.models.stop()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _wake(self, _claim: Claim | None = None, _version: int | None = None) -> None:
        with self._finished:
            self._generation += 1
            self._finished.notify_all()

    # -- requests -------------------------------------------------------------------------

    def receive_many(self, parts: Sequence[bytes], actor: str) -> list[InstanceOutcome]:
        """Store each part durably; one bad part does not stop the others. Raises
        `DiskFullError`, before anything is written, while free disk is under the floor or
        these parts would take it there."""
        full = self.disk.refusal(sum(len(p) for p in parts))
        if full is not None:
            raise full
        outcomes = []
        for index, data in enumerate(parts):
            try:
                received = self.store.receive(data, source=actor)
            except (InputError, StoreError) as exc:
                outcomes.append(InstanceOutcome(index, None, exc))
                continue
            log_stored(log, received.sop_instance_uid, received.study_instance_uid, actor)
            outcomes.append(InstanceOutcome(index, received, None))
        stored = [o.received.sop_instance_uid for o in outcomes if o.received]
        self.store.audit(
            actor, "instances_received", count=len(stored), refused=len(parts) - len(stored)
        )
        return outcomes

    def screen_now(
        self, study_instance_uid: str, wait_s: float | None = None
    ) -> StudyResult | None:
        """Screen one stored study at once (the synchronous API): `screen_studies` for one."""
        return self.screen_studies([study_instance_uid], wait_s)[study_instance_uid]

    def screen_studies(
        self, studies: Sequence[str], wait_s: float | None = None
    ) -> dict[str, StudyResult | None]:
        """Screen stored studies at once and return each one's newest result, or None for a
        study still being screened after `wait_s` (default: the `screen_wait_seconds` setting)
        or when the service is stopping.

        A waiting study is claimed and screened in a thread of its own, by the same
        `ClaimScreening.screen_claim` as the background worker, so it goes on (and its result
        is recorded) after the request has answered. A study another screening holds is
        waited for. The request waits on a condition that every screening here signals.
        """
        wait = self.config.screen_wait_seconds if wait_s is None else wait_s
        deadline = time.monotonic() + wait
        results: dict[str, StudyResult | None] = dict.fromkeys(studies)
        open_ = set(studies)
        while open_:
            with self._finished:
                seen = self._generation
            for study in sorted(open_):
                state = self.store.study_state(study)
                if state is None:  # nothing stored for it: nothing to wait for
                    open_.discard(study)
                elif state["state"] == "done":
                    latest = self.store.latest_result(study)
                    results[study] = latest[1] if latest is not None else None
                    open_.discard(study)
                elif state["state"] == "waiting":
                    self._claim_and_screen(study)
            remaining = deadline - time.monotonic()
            if not open_ or remaining <= 0 or self._stopping.is_set():
                break
            with self._finished:
                if self._generation == seen:
                    self._finished.wait(min(RECHECK_S, remaining))
        return results

    def _claim_and_screen(self, study: str) -> None:
        screening = self.screening
        if screening is None or self._stopping.is_set():
            return
        claim = self.store.claim_study(study)
        if claim is None:
            return  # another screening took it first: wait for that one
        thread = threading.Thread(
            target=self._screen_request, args=(screening, claim), name="screen-request", daemon=True
        )
        self._requests.add(thread)
        thread.start()

    def _screen_request(self, screening: ClaimScreening, claim: Claim) -> None:
        try:
            screening.screen_claim(claim)
        # The thread's top level: screen_claim contains the study's failures itself.
        except Exception:
            log.exception("study %s: screening thread failed", claim.study_instance_uid)
        finally:
            self._requests.discard(threading.current_thread())


def stop_on_signals(runtime: Runtime) -> None:
    """On SIGTERM or SIGINT, call `runtime.begin_shutdown` and then the handler already in
    place (the HTTP server's), so requests waiting on a screening answer before the server
    waits for them. Only from the main thread, where Python allows signal handlers."""
    if threading.current_thread() is not threading.main_thread():
        return
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)

        def handler(sig: int, frame: FrameType | None, previous: object = previous) -> None:
            runtime.begin_shutdown()
            if callable(previous):
                previous(sig, frame)
            elif previous == signal.SIG_DFL:  # nobody else handles it: die of it as before
                signal.signal(sig, signal.SIG_DFL)
                os.kill(os.getpid(), sig)

        signal.signal(signum, handler)


class ObservedScreener(Screener):
    """A screener that reports each batch to an observer (metrics) after screening it."""

    def __init__(self, inner: Screener, observer: Callable[[ScreenBatch], None]) -> None:
        super().__init__(inner.package, inner.engine, limits=inner.limits)
        self._observer = observer

    def screen(self, sources: Sequence[Source]) -> ScreenBatch:
        batch = super().screen(sources)
        self._observer(batch)
        return batch
