"""Prometheus metrics: what arrived, what was screened with which outcome, how long each stage took.

Counters and histograms are ordinary `prometheus_client` metrics. Under BentoML they are
exported by its `/metrics` endpoint, which runs prometheus_client in multiprocess mode
(`PROMETHEUS_MULTIPROC_DIR`): every worker process writes its samples to files there and the
endpoint sums them, so the background worker's screening counts show up whichever worker
answers the scrape.

Queue and outbox depths are not counted but read from the intake store when scraped
(`render_store_gauges`); a custom collector on the default registry would not be exported
in multiprocess mode, so the service appends this text to BentoML's output itself.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from diagnostics.screening import ScreenBatch
from diagnostics.service.runtime import InstanceOutcome
from diagnostics.store import Store
from diagnostics.store.records import Received

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


class StoreGauges(Collector):
    """Queue and outbox depth, read from the intake store at scrape time."""

    def __init__(self, store: Store) -> None:
        self.store = store

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
            "diagnostics_studies_done",
            "Studies with a current result",
            value=counts.get("studies_done", 0),
        )
        yield GaugeMetricFamily(
            "diagnostics_instances_stored",
            "Instances held in the intake store",
            value=counts.get("instances", 0),
        )


def render_store_gauges(store: Store) -> str:
    """The store gauges in Prometheus text format, to append to a metrics page."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreGauges(store))
    return generate_latest(registry).decode("utf-8")
