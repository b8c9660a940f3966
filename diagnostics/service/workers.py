"""Background loops: screen studies that have gone quiet, and deliver results through the outbox.

Both loops are plain threads that poll the intake store, so several processes can share one
store and a restart simply carries on where the database says things stand.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from diagnostics.errors import DiagnosticsError
from diagnostics.screening import Screener
from diagnostics.service.claims import ClaimScreening, Recorded
from diagnostics.service.logs import about_study, destination_label, study_fields
from diagnostics.service.sender import Destination, SendError, send
from diagnostics.store import Store
from diagnostics.store.records import Claim, OutboxItem

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 2.0
BACKOFF_MAX_S = 300.0
ERROR_PAUSE_S = 5.0


def backoff(attempts: int) -> float:
    """Seconds to wait before the next try after `attempts` failures: 2, 4, 8 … 300."""
    return float(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1)))


class Loop:
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

    def request_stop(self) -> None:
        """Stop taking new work; the item in hand is finished."""
        self._stop.set()

    def stop(self, timeout: float = 3.0) -> None:
        """Ask the loop to stop and wait up to `timeout` for the item in hand; a screening
        still running after that is given back by the caller (`Runtime.stop`) or left to its
        lease, never waited on for long."""
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
                self.idle()

    def idle(self) -> None:
        """Wait for the next round (stopping ends the wait)."""
        self._stop.wait(self.poll_s)

    def run_once(self) -> bool:
        raise NotImplementedError


class ScreeningWorker(Loop):
    """Claims studies quiet for `stable_s` (or whose claim ran out) and screens each with
    `ClaimScreening.screen_claim`, the code path the synchronous API shares."""

    name = "screening-worker"

    def __init__(
        self,
        store: Store,
        screener: Screener,
        *,
        stable_s: float,
        destinations: Sequence[str],
        poll_s: float = 0.5,
        on_result: Recorded | None = None,
        screening: ClaimScreening | None = None,
    ) -> None:
        super().__init__(poll_s)
        self.store = store
        self.stable_s = stable_s
        self.on_result = on_result
        self.screening = screening or ClaimScreening(store, screener, destinations)

    def idle(self) -> None:
        """Woken early by intake where the store announces it (PostgreSQL's NOTIFY)."""
        if not self.store.wait_for_work(self.poll_s):
            super().idle()

    def run_once(self) -> bool:
        claims = self.store.claim_due(self.stable_s)
        leases = self.screening.leases
        if leases is not None:
            for claim in claims:  # renewed while they wait their turn too
                leases.hold(claim)
        try:
            for index, claim in enumerate(claims):
                if self.stopping:
                    for rest in claims[index:]:
                        self.store.release(rest)  # requeued, not lost, not a failed try
                    break
                self.screen_claim(claim)
        finally:
            if leases is not None:
                for claim in claims:
                    leases.drop(claim)
        return bool(claims)

    def screen_claim(self, claim: Claim) -> int | None:
        """Screen one claimed study and record the result (`ClaimScreening.screen_claim`)."""
        return self.screening.screen_claim(claim, self.on_result)


class OutboxWorker(Loop):
    """Sends queued results; failures are retried with exponential backoff, forever."""

    name = "outbox-worker"

    def __init__(
        self,
        store: Store,
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
        items = self.store.claim_outbox()  # held: another node never sends them meanwhile
        for index, item in enumerate(items):
            if self.stopping:
                self.store.release_outbox(items[index:])  # due again at once, not after the hold
                break
            self._deliver(item)
        return bool(items)

    def _deliver(self, item: OutboxItem) -> None:
        with about_study(item.study_instance_uid):  # its id on the sender's lines too
            self._deliver_one(item)

    def _deliver_one(self, item: OutboxItem) -> None:
        attempt = item.attempts + 1
        where = destination_label(item.destination)
        try:
            self._send(item.path, Destination.parse(item.destination))
        except (SendError, OSError) as exc:
            wait = backoff(attempt)
            log.warning(
                "outbox: %s to %s failed (attempt %d): %s; retry in %.0f s",
                item.path.name,
                where,
                attempt,
                exc,
                wait,
                extra=_delivery(item, "output_retried", where, attempt, retry_in_s=wait),
            )
            self.store.mark_failed(item, str(exc), wait)
            return
        # One item's unforeseen failure (a peer's odd answer breaking a library) must back off
        # that item alone: raised to the loop, it would end every round before the items behind.
        except Exception as exc:
            wait = backoff(attempt)
            log.exception(
                "outbox: unexpected error sending %s to %s (attempt %d); retry in %.0f s",
                item.path.name,
                where,
                attempt,
                wait,
                extra=_delivery(item, "output_retried", where, attempt, retry_in_s=wait),
            )
            self.store.mark_failed(item, f"internal error ({type(exc).__name__})", wait)
            return
        self.store.mark_sent(item)
        log.info(
            "outbox: %s delivered to %s (attempt %d)",
            item.path.name,
            where,
            attempt,
            extra=_delivery(item, "output_delivered", where, attempt),
        )
        self.store.audit(
            "outbox-worker",
            "result_sent",
            study=item.study_instance_uid,
            file=item.path.name,
            destination=item.destination,
        )


def _delivery(
    item: OutboxItem, event: str, where: str, attempt: int, **fields: object
) -> dict[str, object]:
    return study_fields(
        item.study_instance_uid,
        event,
        destination=where,
        attempt=attempt,
        output=item.path.name,
        **fields,
    )
