"""Keeping the storage folder from filling: the retention job and the free-disk watermark.

Retention (`--retain-days`): the images and output files of studies that are done and whose
newest result is older than the window are deleted; results, the worklist and the audit trail
stay (`diagnostics.store.sqlite.retention` says what qualifies and why the order is crash-safe).
The running service purges at start and then once an hour (or as often as the window, if that
is shorter, but at most once a minute); `diagnostics purge` does the same by hand.

The watermark (`--min-free-disk`): under it, new instances are refused before anything is
written (C-STORE 0xA700, HTTP 507), so intake fails cleanly instead of the database or an
output failing half-written on a full disk. It is read with `statvfs`, at most once a second.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from gettext import NullTranslations
from pathlib import Path

from diagnostics.errors import ConfigurationError, DiskFullError
from diagnostics.package.registry import SHADOW_DIR, ModelRegistry
from diagnostics.results import StudyResult
from diagnostics.service.workers import Loop
from diagnostics.store import Store
from diagnostics.store.records import PurgeReport

log = logging.getLogger(__name__)

DAY_S = 86400.0
PURGE_EVERY_S = 3600.0
MIN_PURGE_EVERY_S = 60.0
"""However short the window, the job runs at most once a minute: each run costs queries and a
look into every run folder per due study."""
MIN_PURGE_EVERY_VARIABLE = "_DIAGNOSTICS_TEST_MIN_PURGE_EVERY_S"
"""Lowers `MIN_PURGE_EVERY_S` for the service's own test (a window of seconds); not a setting."""
LEFTOVERS_EVERY_S = 86400.0
"""The job's full sweep for an interrupted purge's files (it walks all of `instances/` and
every purged study) runs at start and then once a day, not on every run."""
DISK_CACHE_S = 1.0

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1 << 10,
    "mib": 1 << 20,
    "gib": 1 << 30,
    "tib": 1 << 40,
}
_AMOUNT = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-z%]*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class MinFree:
    """A free-space floor: bytes, or a percentage of the file system's size."""

    amount: float
    percent: bool

    @classmethod
    def parse(cls, text: str) -> MinFree:
        """`2GiB`, `500MB`, `1073741824` (bytes), `5%`; `0` turns the watermark off."""
        match = _AMOUNT.match(text)
        unit = match.group(2).lower() if match else ""
        if match is None or (unit != "%" and unit not in _UNITS):
            raise ConfigurationError(
                f"--min-free-disk {text!r}: give bytes with a unit (2GiB, 500MB) or a "
                "percentage of the disk (5%)"
            )
        value = float(match.group(1))
        if unit == "%":
            if value >= 100:
                raise ConfigurationError(f"--min-free-disk {text!r}: a percentage under 100")
            return cls(value, True)
        return cls(value * _UNITS[unit], False)

    def bytes_of(self, total: int) -> int:
        return int(total * self.amount / 100) if self.percent else int(self.amount)


@dataclass(frozen=True)
class DiskState:
    free: int
    floor: int

    @property
    def refused(self) -> bool:
        return self.refuses(0)

    def refuses(self, size: int) -> bool:
        """Whether storing `size` more bytes would take free space under the floor; a floor
        of 0 (`--min-free-disk 0`) never refuses, even when the disk cannot be read."""
        return self.floor > 0 and self.free - size < self.floor


class DiskWatermark:
    """Whether the storage folder's file system has room for new instances (cached ~1 s)."""

    def __init__(self, folder: Path, min_free: str | MinFree) -> None:
        self.folder = folder
        self.min_free = MinFree.parse(min_free) if isinstance(min_free, str) else min_free
        self._lock = threading.Lock()
        self._state: DiskState | None = None
        self._read_at = 0.0

    def state(self) -> DiskState:
        now = time.monotonic()
        with self._lock:
            if self._state is not None and now - self._read_at < DISK_CACHE_S:
                return self._state
            try:
                stat = os.statvfs(self.folder)
                free = stat.f_bavail * stat.f_frsize
                floor = self.min_free.bytes_of(stat.f_blocks * stat.f_frsize)
            except OSError:  # cannot tell: refuse rather than fill blindly, unless off
                free, floor = 0, (0 if self.min_free.amount == 0 else 1)
            state = DiskState(free, floor)
            before, self._state, self._read_at = self._state, state, now
        if before is None or before.refused != state.refused:
            _log_crossing(state, first=before is None)
        return state

    def refusal(self, size: int = 0) -> DiskFullError | None:
        """The error to refuse a new instance of `size` bytes (when known: one big instance
        must not cross the floor) with, or None when there is room."""
        state = self.state()
        if not state.refuses(size):
            return None
        needs = f" ({_human(size)} to store)" if size and not state.refused else ""
        return DiskFullError(
            f"not enough free disk space for new instances: {_human(state.free)} free{needs}, "
            f"under the service's floor of {_human(state.floor)} (--min-free-disk); free space "
            "or lower the floor, then send again"
        )


def _log_crossing(state: DiskState, *, first: bool) -> None:
    if state.refused:
        log.error(
            "free disk %s is under --min-free-disk %s: refusing new instances until there is "
            "room (C-STORE 0xA700, HTTP 507)",
            _human(state.free),
            _human(state.floor),
        )
    elif not first:
        log.warning(
            "free disk %s is back above --min-free-disk %s: accepting new instances again",
            _human(state.free),
            _human(state.floor),
        )


def _human(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def purge_note(
    purged_at: float | None,
    state: str,
    received_since: int,
    on: str,
    t: NullTranslations | None = None,
) -> str | None:
    """What a reader must know about a study whose images went on `on` (the purge's date, as
    the caller shows dates), in the language of `t` (English without one): `purged_at` stays
    set when instances arrive later, so a result screened on those alone never passes for one
    over the whole study."""
    if purged_at is None:
        return None
    t = t if t is not None else NullTranslations()
    if received_since == 0:
        return t.gettext(
            "The images were purged on %(date)s (retention window); the result stands."
        ) % {"date": on}
    before = t.gettext("Images received before %(date)s were purged (retention window).") % {
        "date": on
    }
    if state == "done":
        after = t.ngettext(
            "This version covers the %(num)d instance received since.",
            "This version covers the %(num)d instances received since.",
            received_since,
        )
    else:
        after = t.ngettext(
            "The %(num)d instance received since is waiting to be screened; the result shown "
            "is from before the purge.",
            "The %(num)d instances received since are waiting to be screened; the result shown "
            "is from before the purge.",
            received_since,
        )
    return f"{before} {after % {'num': received_since}}"


EARLIER_VERSIONS_CHECKED = 20
"""How many earlier result versions a page looks back through for an urgent flag."""


def earlier_urgent(
    store: Store, study: str, version: int, current: StudyResult | None
) -> int | None:
    """The newest earlier version that flagged the study urgent when the current one does not
    (e.g. a re-screen after a purge saw only a late instance): shown, never silently dropped."""
    if current is None or current.priority == "urgent":
        return None
    for earlier in range(version - 1, max(0, version - 1 - EARLIER_VERSIONS_CHECKED), -1):
        result = store.result_version(study, earlier)
        if result is not None and result.priority == "urgent":
            return earlier
    return None


def cutoff(retain_days: float, now: float | None = None) -> float:
    """The Unix time before which a study's newest result makes it due for purging."""
    return (time.time() if now is None else now) - retain_days * DAY_S


def purge(
    store: Store,
    retain_days: float,
    *,
    now: float | None = None,
    dry_run: bool = False,
    actor: str = "retention",
    leftovers: bool = True,
) -> PurgeReport:
    """One purge of everything older than the window; logged when it deletes anything."""
    report = store.purge(
        cutoff(retain_days, now), dry_run=dry_run, actor=actor, leftovers=leftovers
    )
    if not dry_run:
        _purge_shadow_results(store.root, [s.study_instance_uid for s in report.studies])
    if report.studies or report.leftovers:
        log.info(
            "retention: %s %d studies' images and outputs and %d leftover files (%s)",
            "would purge" if dry_run else "purged",
            len(report.studies),
            len(report.leftovers),
            _human(report.bytes),
        )
    return report


def _purge_shadow_results(storage: Path, studies: list[str]) -> None:
    """A shadow model's result of a purged study (`package.registry`, one file per study and
    shadow version) goes with the study: it is a result like the others."""
    root = ModelRegistry(storage).root / SHADOW_DIR
    if not studies or not root.is_dir():
        return
    for folder in root.iterdir():
        for study in studies:
            (folder / f"{study}.json").unlink(missing_ok=True)


class RetentionJob(Loop):
    """The service's background purge: at start, then once an hour (or once per window, but
    at most once a minute); the leftover sweep at start and once a day."""

    name = "retention"

    def __init__(self, store: Store, retain_days: float) -> None:
        window = retain_days * DAY_S
        floor = float(os.environ.get(MIN_PURGE_EVERY_VARIABLE) or MIN_PURGE_EVERY_S)
        super().__init__(min(PURGE_EVERY_S, max(floor, window)))
        self.store = store
        self.retain_days = retain_days
        self._swept_at: float | None = None

    def run_once(self) -> bool:
        now = time.monotonic()
        sweep = self._swept_at is None or now - self._swept_at >= LEFTOVERS_EVERY_S
        purge(self.store, self.retain_days, leftovers=sweep)
        if sweep:
            self._swept_at = now
        return False  # then wait for the next round
