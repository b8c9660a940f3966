"""Refused requests, tallied per source and minute: cheap to refuse, still on the record.

One fsync'd audit row and one log line per refused request let a few unauthenticated clients
write megabytes a second to the database and the log. Instead each refusal is counted in
memory, under its source address and the minute it arrived in; a minute's tallies become one
audit row per source (`auth_failed` with the count, the reasons and the route templates) once
the minute is over, and the log gets one line per source and minute. What is kept per minute
is bounded: reasons and route templates are closed sets, and sources beyond `max_sources` are
tallied together as `client:other`.

Closed minutes are written by the next request that passes through authentication, by a timer
a little after the minute ends (so a quiet service still writes them), and by `close` at
shutdown, which writes the current minute too.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from diagnostics.errors import DiagnosticsError

log = logging.getLogger(__name__)

ACTION = "auth_failed"
WINDOW_S = 60.0
MAX_SOURCES = 1000
"""Distinct sources tallied apart per minute; more than this share one `client:other` row."""
OVERFLOW = "client:other"

AuditFn = Callable[..., None]
"""`audit(actor, action, **detail)`, e.g. the store's `audit`."""


@dataclass
class Tally:
    """The refusals of one source in one minute."""

    count: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    routes: Counter[str] = field(default_factory=Counter)

    def add(self, reason: str, route: str) -> None:
        self.count += 1
        self.reasons[reason] += 1
        self.routes[route] += 1


class RefusalLog:
    """Counts refusals (`on_refusal`, e.g. a metric) and audits them per source and minute."""

    def __init__(
        self,
        audit: AuditFn | None,
        *,
        on_refusal: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.time,
        window_s: float = WINDOW_S,
        max_sources: int = MAX_SOURCES,
        timer: bool = True,
    ) -> None:
        self.audit = audit
        self.on_refusal = on_refusal
        self.clock = clock
        self.window_s = window_s
        self.max_sources = max_sources
        self._timer_wanted = timer
        self._lock = threading.Lock()
        self._windows: dict[int, dict[str, Tally]] = {}
        self._timers: list[threading.Timer] = []
        self._closed = False

    def refused(self, source: str, reason: str, method: str, route: str) -> None:
        """Record one refusal; the first of a source in a minute is logged, the rest counted."""
        if self.on_refusal is not None:
            self.on_refusal(reason)
        window = self._window(self.clock())
        with self._lock:
            tallies = self._windows.setdefault(window, {})
            first_window = len(tallies) == 0
            if source not in tallies and len(tallies) >= self.max_sources:
                source = OVERFLOW
            tally = tallies.setdefault(source, Tally())
            first = tally.count == 0
            tally.add(reason, route)
        if first:
            log.warning(
                "authentication failed (%s) for %s %s from %s; further refusals from it this "
                "minute are counted, not logged",
                reason,
                method,
                route,
                source,
            )
        if first_window:
            self._arm_timer(window)

    def due(self) -> bool:
        """Whether a minute is over and waits to be written (cheap: no I/O)."""
        current = self._window(self.clock())
        with self._lock:
            return any(window < current for window in self._windows)

    def flush(self, *, everything: bool = False) -> int:
        """Write the tallies of finished minutes (all of them with `everything`); rows written."""
        current = self._window(self.clock())
        with self._lock:
            done = sorted(w for w in self._windows if everything or w < current)
            taken = [(w, self._windows.pop(w)) for w in done]
        rows = 0
        for window, tallies in taken:
            minute = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(window * self.window_s))
            for source, tally in tallies.items():
                if tally.count > 1:
                    log.warning(
                        "%d authentication failures from %s in the minute from %s",
                        tally.count,
                        source,
                        minute,
                    )
                rows += self._write(source, minute, tally)
        return rows

    def close(self) -> None:
        """At shutdown: write everything, the current minute included, and stop the timer."""
        with self._lock:
            self._closed = True
            timers, self._timers = self._timers, []
        for timer in timers:
            timer.cancel()
        self.flush(everything=True)

    def _window(self, now: float) -> int:
        return int(now // self.window_s)

    def _write(self, source: str, minute: str, tally: Tally) -> int:
        if self.audit is None:
            return 0
        try:
            self.audit(
                source,
                ACTION,
                minute=minute,
                count=tally.count,
                reasons=dict(tally.reasons),
                routes=dict(tally.routes),
            )
        except DiagnosticsError as exc:
            log.error("could not audit %d authentication failures: %s", tally.count, exc)
            return 0
        return 1

    def _arm_timer(self, window: int) -> None:
        """Write this minute shortly after it ends, even if no request comes to do it."""
        if not self._timer_wanted:
            return
        delay = max((window + 1) * self.window_s - self.clock(), 0.0) + 1.0
        timer = threading.Timer(delay, self._on_timer)
        timer.daemon = True
        with self._lock:
            if self._closed:
                return
            # One per minute that saw a refusal: at most two are waiting at any time.
            self._timers = [t for t in self._timers if t.is_alive()] + [timer]
        timer.start()

    def _on_timer(self) -> None:
        try:
            self.flush()
        except Exception:  # a timer thread's top level: log, never die silently
            log.exception("could not write the authentication failures")
