"""Monitoring: daily statistics of what the model said, and drift against its reference.

A model calibrated on one population silently degrades when the studies change (another
scanner, another PACS route, a modality sending laterals). This module reads each study's
current result of the last days from the store (`Store.monitored_results`, bounded by the
window), counts per local day (`--timezone`) the score distribution and flag rate per finding,
the appearance scores, the not-analysed rate and its reasons, and the radiologists' verdicts; and
judges drift: the population stability index (PSI) of the last `drift_days` against the
package's `reference_distributions`, an alarm above `threshold`, "too few studies" under
`min_studies`, "no reference" for packages without one. The same `Report` feeds `/metrics`,
the admin page `/ui/monitoring` and `diagnostics monitor`.

Nothing here carries patient data: counts, dates and finding codes only; not-analysed reasons
are reduced to a closed set of categories (the free text may quote header values).
"""

from __future__ import annotations

import bisect
import threading
import time
import weakref
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from typing import Any, Literal, Protocol

from diagnostics.i18n import N_
from diagnostics.package import ModelPackage
from diagnostics.package.reference import (
    APPEARANCE_EDGES,
    PROBABILITY_EDGES,
    PSI_THRESHOLD,
    ReferenceDistributions,
    psi,
)
from diagnostics.service.runtime import Runtime
from diagnostics.service.viewer import local_zone
from diagnostics.store.records import MonitoredResult

DriftState = Literal["alarm", "ok", "too_few", "no_reference"]
DRIFT_STATES: dict[str, str] = {
    "alarm": N_("drift alarm"),
    "ok": N_("no drift"),
    "too_few": N_("too few studies"),
    "no_reference": N_("no reference"),
}
REASONS: tuple[tuple[str, str], ...] = (
    ("Body Part Examined", N_("body part outside the scope")),
    ("View Position", N_("view outside the scope")),
    ("Photometric Interpretation", N_("photometric interpretation outside the scope")),
    ("multi-frame", N_("multi-frame image")),
    ("pixels, smaller", N_("image too small")),
    ("does not look like", N_("appearance unlike the training images")),
    ("outside this model's scope", N_("modality outside the scope")),
    ("failed", N_("another image failed")),
)
"""Substring of a stage's reason -> its category, first match wins (see `reason_category`)."""
OTHER_REASON = N_("other reason")
VERDICTS = ("agree", "disagree", "missed")
TOP_REASONS = 5
APPEARANCE = "appearance"


def reason_category(reason: str | None) -> str:
    """The category of a not-analysed reason: a closed set, so no header value is repeated."""
    for needle, category in REASONS:
        if reason and needle in reason:
            return category
    return OTHER_REASON


@dataclass(frozen=True)
class MonitorConfig:
    """How far back to look and when to alarm (`--monitor-days`, `--drift-*`)."""

    days: int = 30
    drift_days: int = 7
    threshold: float = PSI_THRESHOLD
    min_studies: int = 100


@dataclass
class FindingDay:
    counts: list[int] = field(default_factory=lambda: [0] * (len(PROBABILITY_EDGES) - 1))
    analysed: int = 0
    flagged: int = 0

    @property
    def flag_rate(self) -> float | None:
        return self.flagged / self.analysed if self.analysed else None


@dataclass
class DayStats:
    """One local day's counts (studies by the day their current result was recorded)."""

    date: str
    studies: int = 0
    analysed: int = 0
    not_analysed: int = 0
    failed: int = 0
    findings: dict[str, FindingDay] = field(default_factory=dict)
    appearance: list[int] = field(default_factory=lambda: [0] * (len(APPEARANCE_EDGES) - 1))
    reasons: Counter[str] = field(default_factory=Counter)
    verdicts: dict[str, Counter[str]] = field(default_factory=dict)

    @property
    def not_analysed_rate(self) -> float | None:
        return self.not_analysed / self.studies if self.studies else None

    def top_reasons(self, n: int = TOP_REASONS) -> list[tuple[str, int]]:
        return self.reasons.most_common(n)

    def add(self, result: MonitoredResult) -> None:
        self.studies += 1
        if result.status == "analyzed":
            self.analysed += 1
        elif result.status == "not_analyzed":
            self.not_analysed += 1
            self.reasons[reason_category(result.reason)] += 1
        else:
            self.failed += 1
        for code, probability, flagged in result.findings:
            day = self.findings.setdefault(code, FindingDay())
            day.counts[_bin(probability, PROBABILITY_EDGES)] += 1
            day.analysed += 1
            day.flagged += int(flagged)
        for score in result.appearance:
            self.appearance[_bin(score, APPEARANCE_EDGES)] += 1
        for code, verdict in result.feedback:
            self.verdicts.setdefault(code, Counter())[verdict] += 1


def _bin(value: float, edges: tuple[float, ...]) -> int:
    """`histogram`'s bin of one value (right edge in the last bin, outside values clipped)."""
    return min(max(bisect.bisect_right(edges, value) - 1, 0), len(edges) - 2)


@dataclass(frozen=True)
class Drift:
    """One distribution's drift over the window: a finding's probabilities or appearance."""

    name: str
    state: DriftState
    psi: float | None
    studies: int
    reference: list[int] | None
    recent: list[int]


@dataclass(frozen=True)
class Report:
    generated: float
    zone: str
    model: tuple[str, str]
    reference: str | None
    config: MonitorConfig
    days: list[DayStats]
    """Newest first; days without studies are listed with zero counts."""
    window: DayStats
    """The drift window's studies of the model version in service, summed."""
    drift: list[Drift]

    model_codes: tuple[str, ...] = ()
    """The package's finding codes (the only finding labels a metric carries)."""

    @property
    def alarm(self) -> bool:
        return any(d.state == "alarm" for d in self.drift)

    def to_dict(self) -> dict[str, Any]:
        return {
            "generated": datetime.fromtimestamp(self.generated).astimezone().isoformat(),
            "time_zone": self.zone,
            "model": {"name": self.model[0], "version": self.model[1]},
            "reference": self.reference,
            "drift_days": self.config.drift_days,
            "drift_threshold": self.config.threshold,
            "min_studies": self.config.min_studies,
            "alarm": self.alarm,
            "drift": [
                {"name": d.name, "state": d.state, "psi": d.psi, "studies": d.studies}
                for d in self.drift
            ],
            "window": _day_dict(self.window),
            "days": [_day_dict(day) for day in self.days],
        }


def _day_dict(day: DayStats) -> dict[str, Any]:
    return {
        "date": day.date,
        "studies": day.studies,
        "analysed": day.analysed,
        "not_analysed": day.not_analysed,
        "failed": day.failed,
        "not_analysed_rate": day.not_analysed_rate,
        "not_analysed_reasons": dict(day.top_reasons()),
        "findings": {
            code: {
                "analysed": f.analysed,
                "flagged": f.flagged,
                "flag_rate": f.flag_rate,
                "probability_counts": f.counts,
            }
            for code, f in sorted(day.findings.items())
        },
        "appearance_counts": day.appearance,
        "feedback": {
            code: {v: counts.get(v, 0) for v in VERDICTS}
            for code, counts in sorted(day.verdicts.items())
        },
    }


class ResultSource(Protocol):
    """A live store or a read-only snapshot."""

    def monitored_results(self, since: float) -> list[MonitoredResult]: ...


def build_report(
    source: ResultSource,
    package: ModelPackage,
    config: MonitorConfig,
    zone: tzinfo,
    *,
    now: float | None = None,
) -> Report:
    """Read the window from the store and count it (the one place this is computed)."""
    now = time.time() if now is None else now
    today = datetime.fromtimestamp(now, zone).date()
    first = today - timedelta(days=max(config.days, config.drift_days) - 1)
    start = datetime(first.year, first.month, first.day, tzinfo=zone).timestamp()
    drift_first = today - timedelta(days=config.drift_days - 1)
    drift_start = datetime(
        drift_first.year, drift_first.month, drift_first.day, tzinfo=zone
    ).timestamp()
    days = {
        (today - timedelta(days=k)).isoformat(): DayStats((today - timedelta(days=k)).isoformat())
        for k in range(config.days)
    }
    manifest = package.manifest
    window = DayStats(f"{drift_first.isoformat()}/{today.isoformat()}")
    for result in source.monitored_results(start):
        day = datetime.fromtimestamp(result.created, zone).date().isoformat()
        if day in days:
            days[day].add(result)
        if result.created >= drift_start and result.model_version in (manifest.version, None):
            window.add(result)
    ref = manifest.reference_distributions
    drift = [_judge(code, ref, window, config) for code in manifest.finding_codes]
    drift.append(_judge(APPEARANCE, ref, window, config))
    return Report(
        generated=now,
        zone=str(zone),
        model=(manifest.name, manifest.version),
        reference=ref.data if ref is not None else None,
        config=config,
        days=list(days.values()),
        window=window,
        drift=drift,
        model_codes=manifest.finding_codes,
    )


def _judge(
    name: str, ref: ReferenceDistributions | None, window: DayStats, config: MonitorConfig
) -> Drift:
    if name == APPEARANCE:
        recent = window.appearance
        expected = ref.appearance if ref is not None else None
        if ref is not None and ref.appearance_edges != list(APPEARANCE_EDGES):
            expected = None  # other bins than this version counts in: not comparable
    else:
        finding = window.findings.get(name)
        recent = finding.counts if finding else [0] * (len(PROBABILITY_EDGES) - 1)
        expected = ref.findings.get(name) if ref is not None else None
        if ref is not None and ref.probability_edges != list(PROBABILITY_EDGES):
            expected = None
    studies = sum(recent)
    if expected is None:
        return Drift(name, "no_reference", None, studies, None, recent)
    if studies < config.min_studies:
        return Drift(name, "too_few", None, studies, expected, recent)
    value = psi(expected, recent)
    state: DriftState = "alarm" if value > config.threshold else "ok"
    return Drift(name, state, value, studies, expected, recent)


def report_lines(report: Report) -> list[str]:
    """`diagnostics monitor`'s text: the drift judgement, then one line per day."""
    lines = [
        f"model {report.model[0]} {report.model[1]}; reference: {report.reference or 'none'}; "
        f"time zone {report.zone}",
        f"drift over the last {report.config.drift_days} days (PSI, alarm above "
        f"{report.config.threshold:g}, at least {report.config.min_studies} studies):",
    ]
    for d in report.drift:
        value = f"{d.psi:.3f}" if d.psi is not None else "-"
        lines.append(f"  {d.name:16} {value:>7}  {DRIFT_STATES[d.state]} ({d.studies} counted)")
    codes = sorted({c for day in report.days for c in day.findings})
    header = f"{'day':10} {'studies':>7} {'not an.':>8} " + " ".join(
        f"{c[:12] + ' flag':>17}" for c in codes
    )
    lines += ["", header]
    for day in report.days:
        rate = day.not_analysed_rate
        cells = [f"{day.date:10} {day.studies:>7} {_percent(rate):>8}"]
        for code in codes:
            f = day.findings.get(code)
            cells.append(f"{_percent(f.flag_rate if f else None):>17}")
        reasons = ", ".join(f"{r} {n}" for r, n in day.top_reasons(3))
        feedback = "; ".join(
            f"{c} " + "/".join(str(v.get(x, 0)) for x in VERDICTS)
            for c, v in sorted(day.verdicts.items())
        )
        extra = "  ".join(p for p in (reasons, f"agree/disagree/missed {feedback}") if p)
        lines.append(" ".join(cells) + ("  " + extra if day.studies else ""))
    if report.alarm:
        lines += [
            "",
            "DRIFT ALARM: check the PACS routing and the modalities sending studies, then "
            "recalibrate on local labelled studies (diagnostics calibrate).",
        ]
    return lines


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


class Monitor:
    """The service's cached report: computed at most every `refresh_s` (scrapes and page views
    between reuse it), in whichever thread asks first."""

    def __init__(self, config: MonitorConfig, refresh_s: float) -> None:
        self.config = config
        self.refresh_s = refresh_s
        self._lock = threading.Lock()
        self._report: Report | None = None
        self._at = 0.0

    def report(self, source: ResultSource, package: ModelPackage, zone: tzinfo) -> Report:
        with self._lock:
            now = time.monotonic()
            stale = self._report is None or now - self._at >= self.refresh_s
            if stale or (self._report is not None and self._report.model[1] != _version(package)):
                self._report = build_report(source, package, self.config, zone)
                self._at = now
            assert self._report is not None
            return self._report


def _version(package: ModelPackage) -> str:
    return package.manifest.version


_MONITORS: weakref.WeakKeyDictionary[object, Monitor] = weakref.WeakKeyDictionary()
_MONITORS_LOCK = threading.Lock()


def monitor_of(owner: object, config: MonitorConfig, refresh_s: float) -> Monitor:
    """The one `Monitor` of a runtime (made on first use; gone with the runtime)."""
    with _MONITORS_LOCK:
        monitor = _MONITORS.get(owner)
        if monitor is None:
            monitor = _MONITORS[owner] = Monitor(config, refresh_s)
        return monitor


def service_report(runtime: Runtime) -> Report | None:
    """The running service's report (cached per runtime); None until a model is loaded."""
    screener = runtime.screener
    if screener is None:
        return None
    c = runtime.config
    config = MonitorConfig(c.monitor_days, c.drift_days, c.drift_threshold, c.drift_min_studies)
    monitor = monitor_of(runtime, config, c.monitor_refresh_seconds)
    return monitor.report(runtime.store, screener.package, local_zone(c.timezone))
