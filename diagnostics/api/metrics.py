"""Prometheus metrics: what arrived, what was screened with which outcome, how long each stage
took, which requests the HTTP routes served, and how the store, the disk and the model stand.

Counters and histograms are ordinary `prometheus_client` metrics. Under BentoML they run in
multiprocess mode (`PROMETHEUS_MULTIPROC_DIR`): every worker process writes its samples to
files there, and the `/metrics` route (`render_metrics`) sums them, so the background worker's
screening counts show up whichever worker answers the scrape. `diagnostics serve` points
BentoML's home, and with it that folder, into the storage folder (`<storage>/bentoml`), which
BentoML empties at start: one folder per instance, never one shared by every service on the
host. BentoML's own HTTP metrics, labelled by raw path, are switched off; requests are counted
here by route template (`diagnostics.api.traffic`).

Every label value comes from a closed set (route templates, known methods, status codes,
refusal reasons, the loaded model's name and version), never from what a client sends, so
probing random paths adds no series. Queue and outbox depths, free disk, the oldest
undelivered result and the model are not counted but read at scrape time (`ServiceGauges`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from diagnostics.errors import StoreError
from diagnostics.screening import ScreenBatch
from diagnostics.service.monitoring import DRIFT_STATES, VERDICTS, Report, service_report
from diagnostics.service.retention import DiskWatermark
from diagnostics.service.runtime import InstanceOutcome, Runtime
from diagnostics.store import Store
from diagnostics.store.records import Received

logger = logging.getLogger(__name__)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REFUSAL_REASONS = ("missing", "not_bearer", "invalid_token", "no_session")
STAGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class ServiceMetrics:
    """The service's own metrics; one instance per process (per registry)."""

    def __init__(self, registry: CollectorRegistry | None = REGISTRY) -> None:
        self.instances = Counter(
            "diagnostics_instances_received",
            "DICOM instances received, by channel (http, stow, dimse) and outcome "
            "(stored, duplicate, refused, error)",
            ["channel", "outcome"],
            registry=registry,
        )
        self.studies = Counter(
            "diagnostics_studies_screened",
            "Studies screened, by result status (analyzed, not_analyzed, failed)",
            ["status"],
            registry=registry,
        )
        self.rejected = Counter(
            "diagnostics_screening_rejected_instances",
            "Stored instances that screening could not attribute to a study",
            registry=registry,
        )
        self.stage_seconds = Histogram(
            "diagnostics_stage_seconds",
            "Wall time per screening stage (ingest, preprocess, appearance, infer, interpret) "
            "per batch",
            ["stage"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )

        self.requests = Counter(
            "diagnostics_http_requests",
            "HTTP requests answered, by route template, method and status (refused and "
            "unmatched requests are not among them)",
            ["route", "method", "status"],
            registry=registry,
        )
        self.request_seconds = Histogram(
            "diagnostics_http_request_seconds",
            "Wall time per HTTP request, by route template and method",
            ["route", "method"],
            buckets=STAGE_BUCKETS,
            registry=registry,
        )
        self.unmatched = Counter(
            "diagnostics_http_unmatched_requests",
            "Authenticated HTTP requests for a path no route serves (404)",
            registry=registry,
        )
        self.auth_failures = Counter(
            "diagnostics_auth_failures",
            "Requests refused by authentication, by reason (missing, not_bearer, "
            "invalid_token, no_session)",
            ["reason"],
            registry=registry,
        )
        for reason in REFUSAL_REASONS:  # present from the start, so a rate needs no first one
            self.auth_failures.labels(reason=reason)

    def count_auth_failure(self, reason: str) -> None:
        """`RefusalLog` hook: one refused request."""
        self.auth_failures.labels(reason=reason if reason in REFUSAL_REASONS else "other").inc()

    def observe_request(self, route: str, method: str, status: int, seconds: float) -> None:
        """`RequestMetrics` hook: one answered request, by its route template."""
        self.requests.labels(route=route, method=method, status=str(status)).inc()
        self.request_seconds.labels(route=route, method=method).observe(seconds)

    def observe_batch(self, batch: ScreenBatch) -> None:
        """Runtime `on_batch` hook: outcomes and stage timings of one screening batch."""
        for outcome in batch.outcomes:
            self.studies.labels(status=outcome.result.status).inc()
        if batch.rejected:
            self.rejected.inc(len(batch.rejected))
        for stage, seconds in batch.stage_seconds.items():
            self.stage_seconds.labels(stage=stage).observe(seconds)

    def count_outcomes(
        self, channel: str, outcomes: Sequence[InstanceOutcome], refused: int = 0
    ) -> None:
        """Instances of one HTTP request: stored, duplicate or refused (plus any refused early)."""
        for outcome in outcomes:
            if outcome.received is not None:
                result = "duplicate" if outcome.received.duplicate else "stored"
            else:
                result = "refused"
            self.instances.labels(channel=channel, outcome=result).inc()
        if refused:
            self.instances.labels(channel=channel, outcome="refused").inc(refused)

    def count_received(self, received: Received, source: str) -> None:
        """Runtime `on_received` hook for the DICOM listener."""
        outcome = "duplicate" if received.duplicate else "stored"
        self.instances.labels(channel="dimse", outcome=outcome).inc()


class ServiceGauges(Collector):
    """What is read, not counted, at scrape time: queue and outbox, disk, model."""

    def __init__(
        self,
        store: Store,
        storage: Path,
        model: tuple[str, str] | None,
        disk: DiskWatermark | None = None,
    ) -> None:
        self.store = store
        self.storage = storage
        self.model = model
        self.disk = disk
        self._free = disk or DiskWatermark(storage, "0")
        """Free disk is read the watermark's way (statvfs, cached), so the gauge and intake
        refusals never disagree."""

    def collect(self) -> Iterable[Metric]:
        counts = self.store.counts()
        queue = GaugeMetricFamily(
            "diagnostics_queue_depth",
            "Studies waiting to be screened or being screened",
            labels=["state"],
        )
        for state in ("waiting", "screening"):
            queue.add_metric([state], counts.get(f"studies_{state}", 0))
        yield queue
        yield GaugeMetricFamily(
            "diagnostics_outbox_depth",
            "Result files waiting to be sent to their destinations",
            value=counts.get("outbox_pending", 0),
        )
        yield GaugeMetricFamily(
            "diagnostics_outbox_oldest_age_seconds",
            "Seconds since the oldest result still waiting to be sent was recorded (0: none "
            "is waiting)",
            value=counts.get("outbox_oldest_age_s", 0),
        )
        yield GaugeMetricFamily(
            "diagnostics_studies_done",
            "Studies with a current result",
            value=counts.get("studies_done", 0),
        )
        yield GaugeMetricFamily(
            "diagnostics_instances_stored",
            "Instances held in the intake store",
            value=counts.get("instances", 0),
        )
        free = self._free.state().free
        yield GaugeMetricFamily(
            "diagnostics_storage_free_bytes",
            "Free space on the file system of the storage folder",
            value=free,
        )
        if self.disk is not None:
            disk = self.disk.state()
            yield GaugeMetricFamily(
                "diagnostics_storage_min_free_bytes",
                "Free space under which new instances are refused (--min-free-disk)",
                value=disk.floor,
            )
            yield GaugeMetricFamily(
                "diagnostics_intake_refused",
                "1 while new instances are refused for lack of free disk (C-STORE 0xA700, "
                "HTTP 507), else 0",
                value=int(disk.refused),
            )
        if self.model is not None:
            info = GaugeMetricFamily(
                "diagnostics_model_info",
                "The model package in service (always 1; its name and version are the labels)",
                labels=["name", "version"],
            )
            info.add_metric(list(self.model), 1)
            yield info


def render_metrics(runtime: Runtime | None) -> bytes:
    """The `/metrics` page: every process's samples, then the gauges read now."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if directory:
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
        text = generate_latest(_Ordered(registry))
    else:  # one process (tests, a plain `bentoml serve` without the variable)
        text = generate_latest(REGISTRY)
    if runtime is None:
        return text
    screener = runtime.screener
    model = (screener.model_ref.name, screener.model_ref.version) if screener else None
    gauges = CollectorRegistry(auto_describe=False)
    gauges.register(ServiceGauges(runtime.store, runtime.config.storage, model, runtime.disk))
    gauges.register(MonitoringGauges(runtime))
    return text + generate_latest(gauges)


class MonitoringGauges(Collector):
    """Drift and daily rates (`diagnostics.service.monitoring`, cached there for minutes):
    labels are finding codes and closed sets only."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def collect(self) -> Iterable[Metric]:
        try:
            report = service_report(self.runtime)
        except (StoreError, ValueError) as exc:  # a scrape still shows everything else
            logger.warning("monitoring statistics unavailable: %s", type(exc).__name__)
            return
        if report is None:
            return
        yield from monitoring_metrics(report)


def monitoring_metrics(report: Report) -> Iterable[Metric]:
    """The report as gauges over its drift window (`--drift-days`)."""
    psi = GaugeMetricFamily(
        "diagnostics_drift_psi",
        "Population stability index of the drift window against the model's reference, by "
        "finding (or 'appearance'); absent while too few studies or no reference",
        labels=["finding"],
    )
    alarm = GaugeMetricFamily(
        "diagnostics_drift_alarm",
        "1 when the distribution's PSI is above --drift-threshold, else 0",
        labels=["finding"],
    )
    state = GaugeMetricFamily(
        "diagnostics_drift_state",
        "1 for the drift judgement that holds (alarm, ok, too_few, no_reference), by finding",
        labels=["finding", "state"],
    )
    for d in report.drift:
        if d.psi is not None:
            psi.add_metric([d.name], d.psi)
        alarm.add_metric([d.name], int(d.state == "alarm"))
        for name in DRIFT_STATES:
            state.add_metric([d.name, name], int(d.state == name))
    yield from (psi, alarm, state)
    yield GaugeMetricFamily(
        "diagnostics_drift_window_studies",
        "Studies of the model version in service in the drift window",
        value=report.window.studies,
    )
    flag_rate = GaugeMetricFamily(
        "diagnostics_flag_rate",
        "Share of analysed studies flagged in the drift window, by finding",
        labels=["finding"],
    )
    for code in report.model_codes:
        finding = report.window.findings.get(code)
        if finding is not None and finding.flag_rate is not None:
            flag_rate.add_metric([code], finding.flag_rate)
    yield flag_rate
    if report.window.not_analysed_rate is not None:
        yield GaugeMetricFamily(
            "diagnostics_not_analysed_rate",
            "Share of studies not analysed (out of scope, unlike training) in the drift window",
            value=report.window.not_analysed_rate,
        )
    feedback = GaugeMetricFamily(
        "diagnostics_feedback_verdicts",
        "Radiologists' latest verdicts on the drift window's results, by finding and verdict",
        labels=["finding", "verdict"],
    )
    for code in report.model_codes:
        counts = report.window.verdicts.get(code)
        for verdict in VERDICTS:
            feedback.add_metric([code, verdict], counts[verdict] if counts else 0)
    yield feedback


class _Ordered(Collector):
    """Multiprocess histograms with their samples in exposition order (buckets, count, sum)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self) -> Iterable[Metric]:
        for metric in self.registry.collect():
            if metric.type == "histogram":
                metric.samples.sort(key=_histogram_order)
            yield metric


def _histogram_order(sample: object) -> tuple[tuple[tuple[str, str], ...], int, float]:
    name = str(getattr(sample, "name", ""))
    labels: dict[str, str] = dict(getattr(sample, "labels", {}))
    rest = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
    le = labels.get("le")
    if name.endswith("_bucket"):
        return rest, 0, float("inf") if le == "+Inf" else float(le or 0)
    return rest, 1 if name.endswith("_count") else 2, 0.0
