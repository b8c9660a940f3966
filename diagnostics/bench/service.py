"""`diagnostics bench --service`: the HTTP service beside in-process screening, in one run.

The real service (`diagnostics serve`, a subprocess: `diagnostics.bench.server`) and this
process's own screener (same package, same engine) screen the same studies, in interleaved
rounds so that machine noise hits both alike:

- latency at 1 client: `POST /v1/screen` one study at a time, against `Screener.screen` of the
  same study (a plain screener, as a library user holds one);
- throughput at 8 clients: 8 threads posting studies, against 8 threads of this process
  screening the same studies with the screener the service builds (one process, the same
  micro-batching), i.e. the same number of worker threads and processes as the service.

Every study sent is new to the service (fresh UIDs over a few synthetic images), so nothing is
answered from a stored result. Also measured: cold start to `/readyz`, the resident memory of
the service's processes, and end to end C-STORE (storescu -> result recorded) without a goal.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

import diagnostics
from diagnostics.bench.clients import (
    Counts,
    Studies,
    concurrent_rate,
    percentiles,
    sequential_ms,
)
from diagnostics.bench.config import Report, goal_lines, goal_table, run_warnings
from diagnostics.bench.server import (
    POLL_S,
    Service,
    cstore,
    memory_summary,
    process_memory,
    start_service,
    storescu,
    wait_recorded,
)
from diagnostics.bench.timing import cpu_model, load_average, peak_rss_mib
from diagnostics.constants import BUNDLED_MODEL, ENGINE_CHOICES
from diagnostics.errors import ConfigurationError
from diagnostics.package import load_package
from diagnostics.reports import write_reports
from diagnostics.screening import Screener
from diagnostics.screening.engine import default_threads
from diagnostics.screening.engines import EngineChoice
from diagnostics.service.runtime import BATCH_WAIT_S

log = logging.getLogger(__name__)

CLIENTS = 8
SERVICE_GOALS: dict[str, float] = {"http_8clients_vs_inprocess": 0.9}
"""Met when the ratio is at least this."""
SERVICE_GOALS_AT_MOST: dict[str, float] = {"http_p50_vs_inprocess": 1.2}
"""Met when the ratio is at most this."""
DICOM = "application/dicom"


@dataclass(frozen=True)
class ServiceBenchConfig:
    """What `diagnostics bench --service` runs; the defaults are the full run (minutes)."""

    model: Path = BUNDLED_MODEL
    engine: EngineChoice = "onnxruntime"
    rounds: int = 3
    latency_studies: int = 10
    """Studies per round at 1 client, each way."""
    throughput_studies: int = 24
    """Studies per round at 8 clients, each way."""
    cstore_studies: int = 10
    study_size: int = 512
    pool: int = 4
    """Distinct synthetic images the studies are made of (each sent with new UIDs)."""
    warmup: int = 2
    seed: int = 2024
    quick: bool = False

    def __post_init__(self) -> None:
        for name in ("rounds", "latency_studies", "throughput_studies", "pool", "study_size"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"bench --service {name} must be at least 1")
        if self.engine not in ENGINE_CHOICES:
            raise ConfigurationError(f"bench --service engine must be one of {ENGINE_CHOICES}")
        if self.cstore_studies < 0 or self.warmup < 0:
            raise ConfigurationError("bench --service cstore_studies and warmup must be >= 0")

    @classmethod
    def quick_run(cls, model: Path, engine: EngineChoice = "onnxruntime") -> ServiceBenchConfig:
        """Seconds of measuring (plus the service's start): numbers that mean little."""
        return cls(
            model=model,
            engine=engine,
            rounds=2,
            latency_studies=2,
            throughput_studies=CLIENTS,
            cstore_studies=2,
            study_size=256,
            pool=2,
            warmup=1,
            quick=True,
        )


def _http_screen(
    service: Service, connection: http.client.HTTPConnection, data: bytes, counts: Counts
) -> None:
    status, body = service.request(connection, "POST", "/v1/screen", data, DICOM)
    if status != 200:
        counts.add(f"http_{status}")
        return
    counts.add(f"http_{json.loads(body).get('status')}")


def _local_screen(
    screener: Screener, data: bytes, counts: Counts, outputs: Path | None = None
) -> None:
    """`Screener.screen` of one study; with `outputs`, also its DICOM outputs (SR, overlay,
    presentation state) written there, as the service writes them before it answers."""
    batch = screener.screen([data])
    for outcome in batch.outcomes:
        counts.add(f"inprocess_{outcome.result.status}")
        if outputs is not None:
            write_reports(outcome, outputs)
    if batch.rejected:
        counts.add("inprocess_rejected")


def _cstore_ms(service: Service, studies: Studies, count: int, root: Path) -> Report:
    """storescu of a new study until `GET /v1/studies/{uid}` answers its recorded result."""
    if count == 0:
        return {"skipped": "--cstore-studies 0"}
    if storescu() is None:
        return {"skipped": "storescu (DCMTK) is not installed"}
    times, statuses = [], Counts()
    connection = service.connection()
    try:
        for index in range(count):
            study, data = studies.fresh()
            path = root / f"cstore-{index}.dcm"
            path.write_bytes(data)
            began = time.perf_counter()
            cstore(service, path)
            result = wait_recorded(service, connection, study)
            times.append(1000 * (time.perf_counter() - began))
            recorded = result.get("result")
            statuses.add(str(recorded.get("status") if isinstance(recorded, dict) else None))
    finally:
        connection.close()
    return {
        "studies": count,
        "stable_seconds": 0,
        "worker_poll_s": 0.5,
        "result_poll_s": POLL_S,
        "ms": percentiles(times),
        "p50_ms": percentiles(times)["p50"],
        "p95_ms": percentiles(times)["p95"],
        "statuses": statuses.seen,
    }


def _measure(
    service: Service, config: ServiceBenchConfig, studies: Studies, outputs: Path
) -> Report:
    """The interleaved rounds: HTTP and in-process alternate which goes first."""
    package = load_package(config.model)
    plain = Screener.load(package, engine=config.engine)
    batching = Screener.load(
        package,
        engine=config.engine,
        batch_wait_s=BATCH_WAIT_S,
    )
    plain.warm_up()
    batching.warm_up()
    counts, warm = Counts(), Counts()
    connection = service.connection()

    def http_call(data: bytes, tally: Counts = counts) -> None:
        _http_screen(service, connection, data, tally)

    def http_client() -> tuple[Callable[[bytes], None], Callable[[], None]]:
        own = service.connection()
        return (lambda data: _http_screen(service, own, data, counts)), own.close

    def local_client() -> tuple[Callable[[bytes], None], Callable[[], None]]:
        return (lambda data: _local_screen(batching, data, counts)), lambda: None

    for data in studies.batch(config.warmup):
        http_call(data, warm)
        _local_screen(plain, data, warm)
        _local_screen(batching, data, warm)
    floor: list[float] = []
    latency: dict[str, list[float]] = {"http": [], "inprocess": [], "inprocess_outputs": []}
    information = Counts()
    rates: dict[str, list[float]] = {"http": [], "inprocess": []}
    try:
        for number in range(config.rounds):
            log.info("bench --service: round %d of %d", number + 1, config.rounds)
            sides = ("http", "inprocess") if number % 2 == 0 else ("inprocess", "http")
            one = studies.batch(config.latency_studies)
            for side in sides:
                call = http_call if side == "http" else partial(_local_screen, plain, counts=counts)
                latency[side].extend(sequential_ms(call, one))
            # Information: what the DICOM outputs add to in-process screening (not a goal).
            write = partial(_local_screen, plain, counts=information, outputs=outputs)
            latency["inprocess_outputs"].extend(sequential_ms(write, one))
            many = studies.batch(config.throughput_studies)
            for side in sides:
                client = http_client if side == "http" else local_client
                rates[side].append(concurrent_rate(client, many, CLIENTS))
            floor.extend(sequential_ms(lambda _: _floor(service, connection), [b""] * 3))
    finally:
        connection.close()
    http_ms, local_ms = percentiles(latency["http"]), percentiles(latency["inprocess"])
    http_rate = float(np.median(rates["http"]))
    local_rate = float(np.median(rates["inprocess"]))
    return {
        "latency": {
            "clients": 1,
            "studies_per_round": config.latency_studies,
            "http_ms": http_ms,
            "inprocess_ms": local_ms,
            "inprocess_with_dicom_outputs_ms": percentiles(latency["inprocess_outputs"]),
            "http_round_trip_floor_ms": percentiles(floor),
        },
        "throughput": {
            "clients": CLIENTS,
            "inprocess_threads": CLIENTS,
            "inprocess_processes": 1,
            "service_workers": 1,
            "studies_per_round": config.throughput_studies,
            "http_studies_per_s": http_rate,
            "inprocess_studies_per_s": local_rate,
            "http_rounds": rates["http"],
            "inprocess_rounds": rates["inprocess"],
        },
        "outcomes": counts.seen,
        "ratios": {
            "http_p50_vs_inprocess": http_ms["p50"] / local_ms["p50"],
            "http_p95_vs_inprocess": http_ms["p95"] / local_ms["p95"],
            "http_8clients_vs_inprocess": http_rate / local_rate,
        },
    }


def _floor(service: Service, connection: http.client.HTTPConnection) -> None:
    """An authenticated request that does nearly nothing (an unknown study: 404)."""
    service.request(connection, "GET", "/v1/studies/1.2.3.4")


def run_service_bench(config: ServiceBenchConfig) -> Report:
    """Start the service, measure, stop it; returns the JSON-ready report."""
    began = time.perf_counter()
    load_start = load_average()
    load_package(config.model)  # a bad package is refused before anything starts
    studies = Studies(config.pool, config.study_size, config.seed)
    with tempfile.TemporaryDirectory(prefix="diagnostics-bench-service-") as tmp:
        root = Path(tmp)
        log.info("bench --service: starting the service")
        service = start_service(root, config.model.resolve(), config.engine)
        log.info("bench --service: ready in %.1f s; measuring", service.cold_start_s)
        try:
            at_ready = memory_summary(service.processes_at_ready)
            measured = _measure(service, config, studies, root / "outputs")
            log.info("bench --service: C-STORE")
            cstore_report = _cstore_ms(service, studies, config.cstore_studies, root)
            after = memory_summary(process_memory(service.process.pid))
        finally:
            code = service.stop()
    ratios = measured.pop("ratios")
    goals = goal_table(ratios, SERVICE_GOALS, SERVICE_GOALS_AT_MOST)
    warnings = _warnings(config, load_start, measured["outcomes"], code)
    return {
        "benchmark": "diagnostics bench --service",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": config.quick,
        "duration_s": time.perf_counter() - began,
        "method": {
            "service": "diagnostics serve in a subprocess: 1 HTTP worker, a temporary storage "
            "folder, a random API token, --stable-seconds 0, the same package and engine",
            "latency": "POST /v1/screen (application/dicom, one instance, kept-alive "
            "connection) vs Screener.screen([bytes]) of the same study in this process",
            "throughput": f"{CLIENTS} client threads each posting one study at a time vs "
            f"{CLIENTS} threads of this process screening the same studies with the service's "
            f"screener (micro-batching, {BATCH_WAIT_S} s wait); studies/s = studies / wall time, "
            "median over rounds",
            "interleaved": "each round runs HTTP and in-process back to back, alternating "
            "which goes first",
            "studies": "synthetic single-image DX studies, explicit VR little endian, every "
            "one sent with new Study/Series/SOP Instance UIDs",
            "cold_start": "from starting `diagnostics serve` to the first 200 of /readyz, "
            "polled every 50 ms",
            "memory": "VmRSS and PSS of every process of the service, from /proc",
            "cstore": "storescu of one new study until GET /v1/studies/{uid} answers 200",
            "floor": "GET /v1/studies/{unknown uid}: an authenticated request doing nothing",
            "inprocess_with_dicom_outputs": "information: Screener.screen plus write_reports "
            "(SR, overlay, presentation state), which the service does before it answers",
        },
        "environment": {
            "cpu": cpu_model(),
            "logical_cpus": os.cpu_count(),
            "usable_cpus": default_threads(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "diagnostics": diagnostics.__version__,
            "onnxruntime": ort.__version__,
            "engine": config.engine,
            "model": str(config.model),
            "load_average_1min_start": load_start,
            "load_average_1min_end": load_average(),
        },
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(config).items()},
        "studies": {
            "image_size": [config.study_size, config.study_size],
            "transfer_syntax": "explicit VR little endian",
            "mean_bytes": sum(studies.sizes) / max(1, len(studies.sizes)),
            "sent": len(studies.sizes),
        },
        "service": {
            "cold_start_s": service.cold_start_s,
            "workers": 1,
            "exit_code": code,
            "memory_at_ready": at_ready,
            "memory_after": after,
            "rss_mib_per_worker": after["rss_mib_per_worker"],
        },
        **measured,
        "cstore": cstore_report,
        "memory": {"bench_peak_rss_mib": peak_rss_mib()},
        "ratios": ratios,
        "goals": goals,
        "warnings": warnings,
    }


def _warnings(
    config: ServiceBenchConfig, load: float | None, outcomes: dict[str, int], code: int | None
) -> list[str]:
    warnings = run_warnings(load, config.quick)
    odd = {k: v for k, v in outcomes.items() if not k.endswith("_analyzed")}
    if odd:
        warnings.append(f"not every study was analysed, so the rates are not comparable: {odd}")
    if code not in (0, None):
        warnings.append(f"the service exited with status {code} when stopped")
    return warnings


def service_summary_lines(report: Report) -> list[str]:
    """A few lines for a person; the JSON report has everything."""
    latency, throughput, service = report["latency"], report["throughput"], report["service"]
    env = report["environment"]
    lines = [
        f"{env['cpu']}: {env['usable_cpus']} cores, engine {env['engine']}",
        f"cold start to ready {service['cold_start_s']:.1f} s; RSS per worker "
        f"{service['rss_mib_per_worker'] or 0:.0f} MiB "
        f"(all processes {service['memory_after']['total_rss_mib']:.0f} MiB)",
        f"1 client: HTTP p50 {latency['http_ms']['p50']:.1f} ms, p95 "
        f"{latency['http_ms']['p95']:.1f} ms; in-process p50 {latency['inprocess_ms']['p50']:.1f}"
        f" ms, p95 {latency['inprocess_ms']['p95']:.1f} ms (with DICOM outputs p50 "
        f"{latency['inprocess_with_dicom_outputs_ms']['p50']:.1f} ms); HTTP floor "
        f"{latency['http_round_trip_floor_ms']['p50']:.1f} ms",
        f"{throughput['clients']} clients: HTTP {throughput['http_studies_per_s']:.1f} studies/s,"
        f" in-process {throughput['inprocess_studies_per_s']:.1f} studies/s",
    ]
    cstore_report = report["cstore"]
    if "skipped" in cstore_report:
        lines.append(f"C-STORE: skipped ({cstore_report['skipped']})")
    else:
        lines.append(
            f"C-STORE to recorded result: p50 {cstore_report['p50_ms']:.0f} ms, p95 "
            f"{cstore_report['p95_ms']:.0f} ms ({cstore_report['studies']} studies)"
        )
    return lines + goal_lines(report)
