"""The running service's engine room: store, screener, listener and background loops.

The HTTP layer (serving/service.py) and `diagnostics serve` both drive this object. Several
HTTP worker processes may share one storage folder; the DICOM listener and the background loops
run in exactly one of them, the one that holds the storage folder's lock.
"""

from __future__ import annotations

import fcntl
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO

from diagnostics.dicom.reader import Source
from diagnostics.errors import InputError, StoreError
from diagnostics.intake.config import ServiceConfig
from diagnostics.intake.listener import DicomListener
from diagnostics.intake.store import IntakeStore, Received
from diagnostics.intake.worker import OutboxWorker, ScreeningWorker
from diagnostics.results import StudyResult
from diagnostics.screening import ScreenBatch, Screener

log = logging.getLogger(__name__)

BATCH_WAIT_S = 0.01
"""How long a model call waits for concurrent requests to join it (adaptive batching)."""


@dataclass(frozen=True)
class InstanceOutcome:
    """What happened to one uploaded instance (the STOW-RS response is built from these)."""

    index: int
    received: Received | None
    error: InputError | StoreError | None


class Runtime:
    """Owns the service's moving parts; `start` loads and warms the model before `ready`."""

    def __init__(
        self,
        config: ServiceConfig,
        *,
        on_batch: Callable[[ScreenBatch], None] | None = None,
        on_received: Callable[[Received, str], None] | None = None,
    ) -> None:
        """`on_batch` sees every screening batch (stage timings, outcomes) and `on_received`
        every instance the DICOM listener stores: hooks for metrics, called in worker threads."""
        self.config = config
        self.on_batch = on_batch
        self.on_received = on_received
        self.store = IntakeStore(config.storage)
        self.screener: Screener | None = None
        self.listener: DicomListener | None = None
        self.loops: list[ScreeningWorker | OutboxWorker] = []
        self._lock_file: IO[str] | None = None
        self._ready = threading.Event()
        self._sync_lock = threading.Lock()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        """Load, verify and warm the model; then, in one process only, listen and work."""
        screener = Screener.load(self.config.model, batch_wait_s=BATCH_WAIT_S)
        screener.warm_up()
        if self.on_batch is not None:
            screener = ObservedScreener(screener, self.on_batch)
        self.screener = screener
        if self._take_lead():
            requeued = self.store.recover()
            if requeued:
                log.warning("requeued %d studies interrupted by the last shutdown", requeued)
            self._start_background(screener)
        self._ready.set()

    def _take_lead(self) -> bool:
        handle = (self.config.storage / "lead.lock").open("w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            return False
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle
        return True

    def _start_background(self, screener: Screener) -> None:
        config = self.config
        self.loops = [
            ScreeningWorker(
                self.store,
                screener,
                stable_s=config.stable_seconds,
                destinations=config.results_to,
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
        if config.allow_ae:
            self.listener = DicomListener(
                self.store,
                ae_title=config.ae_title,
                port=config.dicom_port,
                allowed_callers=config.allow_ae,
                ssl_context=self._tls(),
                on_received=self.on_received,
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
        return self._ready.is_set() and all(loop.running for loop in self.loops)

    @property
    def leads(self) -> bool:
        return self._lock_file is not None

    def stop(self) -> None:
        """Stop taking work, finish or requeue what is in hand, release the lock."""
        self._ready.clear()
        if self.listener is not None:
            self.listener.stop()
        for loop in self.loops:
            loop.stop()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    # -- requests -------------------------------------------------------------------------

    def receive_many(self, parts: Sequence[bytes], actor: str) -> list[InstanceOutcome]:
        """Store each part durably; one bad part does not stop the others."""
        outcomes = []
        for index, data in enumerate(parts):
            try:
                received = self.store.receive(data, source=actor)
            except (InputError, StoreError) as exc:
                outcomes.append(InstanceOutcome(index, None, exc))
                continue
            outcomes.append(InstanceOutcome(index, received, None))
        stored = [o.received.sop_instance_uid for o in outcomes if o.received]
        self.store.audit(
            actor, "instances_received", count=len(stored), refused=len(parts) - len(stored)
        )
        return outcomes

    def screen_now(self, study_instance_uid: str, timeout_s: float = 120.0) -> StudyResult | None:
        """Screen a stored study at once (the synchronous API) and return its newest result.

        When the background worker already holds the study, wait for its result instead.
        """
        if self.screener is None:
            return None
        claim = self.store.claim_study(study_instance_uid)
        if claim is not None:
            worker = ScreeningWorker(
                self.store, self.screener, stable_s=0, destinations=self.config.results_to
            )
            with self._sync_lock:
                worker.screen_claim(claim)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            state = self.store.study_state(study_instance_uid)
            if state is not None and state["state"] == "done":
                latest = self.store.latest_result(study_instance_uid)
                return latest[1] if latest else None
            time.sleep(0.1)
        return None


class ObservedScreener(Screener):
    """A screener that reports each batch to an observer (metrics) after screening it."""

    def __init__(self, inner: Screener, observer: Callable[[ScreenBatch], None]) -> None:
        super().__init__(inner.package, inner.engine, limits=inner.limits)
        self._observer = observer

    def screen(self, sources: Sequence[Source]) -> ScreenBatch:
        batch = super().screen(sources)
        self._observer(batch)
        return batch
