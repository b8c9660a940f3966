"""`diagnostics bench --nodes 1,2`: throughput and per-study latency of 1, 2, ... service nodes
sharing one PostgreSQL and one storage folder, in one run.

Each deployment (a number of nodes) gets its own database in one throwaway PostgreSQL cluster
and its own storage folder, and all deployments run side by side, so that rounds can interleave:
each round sends a burst of new studies by STOW-RS to each deployment in turn (the order
rotating), spread evenly over its nodes, and waits until every acknowledged study has its result
recorded. Node i is pinned to its own share of the cores (`cores // widest deployment`), as if
it had a machine to itself; PostgreSQL and this load generator are not pinned, so on a machine
with no core to spare they take from the nodes.

- throughput: studies of the burst / (last result recorded - first study sent), median over
  rounds;
- latency: from a study's STOW-RS acknowledgement until the store shows its result (polled
  every `POLL_S`), pooled over rounds;
- `nodes2_vs_nodes1`: throughput of 2 nodes over that of 1 (goal 1.7 where the cores allow).
Every study must end with exactly one result (version 1): anything else is in the warnings.
"""

from __future__ import annotations

import http.client
import logging
import os
import platform
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

import diagnostics
from diagnostics.bench.clients import Counts, Studies, percentiles
from diagnostics.bench.config import Report, goal_lines, goal_table, run_warnings
from diagnostics.bench.postgres import throwaway_cluster
from diagnostics.bench.server import Service, start_service
from diagnostics.bench.timing import cpu_model, load_average
from diagnostics.constants import BUNDLED_MODEL, ENGINE_CHOICES
from diagnostics.errors import ConfigurationError
from diagnostics.package import load_package
from diagnostics.screening.engines import EngineChoice
from diagnostics.store import Store, open_store

log = logging.getLogger(__name__)

NODES_GOALS: dict[str, float] = {"nodes2_vs_nodes1": 1.7}
POLL_S = 0.1
"""How often the store is asked which studies have results: the latency's granularity."""
BURST_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class NodesBenchConfig:
    """What `diagnostics bench --nodes` runs; the defaults are the full run (minutes)."""

    model: Path = BUNDLED_MODEL
    nodes: tuple[int, ...] = (1, 2)
    engine: EngineChoice = "onnxruntime"
    rounds: int = 3
    studies: int = 40
    """Studies per burst, per deployment and round."""
    study_size: int = 512
    pool: int = 4
    seed: int = 2024
    quick: bool = False

    def __post_init__(self) -> None:
        if not self.nodes or min(self.nodes) < 1 or len(set(self.nodes)) != len(self.nodes):
            raise ConfigurationError("bench --nodes: distinct node counts, each at least 1")
        for name in ("rounds", "studies", "study_size", "pool"):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"bench --nodes {name} must be at least 1")
        if self.engine not in ENGINE_CHOICES:
            raise ConfigurationError(f"bench --nodes engine must be one of {ENGINE_CHOICES}")

    @classmethod
    def quick_run(cls, model: Path, nodes: tuple[int, ...] = (1, 2)) -> NodesBenchConfig:
        """A run of seconds (plus the nodes' start) whose numbers mean little."""
        return cls(
            model=model, nodes=nodes, rounds=1, studies=4, study_size=256, pool=2, quick=True
        )


def node_cpus(index: int, widest: int, cores: Sequence[int]) -> set[int]:
    """The cores node `index` is pinned to: an equal share for each node of the widest
    deployment (at least one core; shared round-robin when there are fewer cores than nodes)."""
    share = max(1, len(cores) // widest)
    start = (index * share) % len(cores)
    return {cores[(start + k) % len(cores)] for k in range(share)}


@dataclass
class Deployment:
    """`size` nodes on one database and one storage folder."""

    size: int
    database: str
    storage: Path
    services: list[Service] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)
    studies: list[str] = field(default_factory=list)
    outcomes: Counts = field(default_factory=Counts)


def _stow(service: Service, connection: http.client.HTTPConnection, data: bytes) -> int:
    boundary = uuid.uuid4().hex
    body = b"".join(
        [
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(),
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        ]
    )
    kind = f'multipart/related; type="application/dicom"; boundary={boundary}'
    status, _ = service.request(connection, "POST", "/dicomweb/studies", body, kind)
    return status


def _burst(deployment: Deployment, store: Store, studies: Studies, count: int) -> None:
    """Send `count` new studies over the deployment's nodes, one sender thread per node, and
    record throughput and latency once every acknowledged study has its result."""
    items = [studies.fresh() for _ in range(count)]
    acknowledged: dict[str, float] = {}
    lock = threading.Lock()

    def send(service: Service, share: list[tuple[str, bytes]]) -> None:
        connection = service.connection()
        try:
            for study, data in share:
                status = _stow(service, connection, data)
                deployment.outcomes.add(f"stow_{status}")
                if status == 200:
                    with lock:
                        acknowledged[study] = time.perf_counter()
        finally:
            connection.close()

    size = len(deployment.services)
    senders = [
        threading.Thread(target=send, args=(service, items[i::size]), name=f"bench-node-{i}")
        for i, service in enumerate(deployment.services)
    ]
    began = time.perf_counter()
    for sender in senders:
        sender.start()
    recorded: dict[str, float] = {}
    deadline = time.monotonic() + BURST_TIMEOUT_S
    while True:
        with lock:
            pending = [study for study in acknowledged if study not in recorded]
        sending = any(sender.is_alive() for sender in senders)
        if not pending and not sending:
            break
        if time.monotonic() > deadline:
            raise ConfigurationError(
                f"bench --nodes: {len(pending)} studies without a result after "
                f"{BURST_TIMEOUT_S:g} s on {size} node(s)"
            )
        for study in pending:
            state = store.study_state(study)
            if state is not None and state["state"] == "done":
                recorded[study] = time.perf_counter()
        time.sleep(POLL_S)
    for sender in senders:
        sender.join()
    if recorded:
        deployment.rates.append(len(recorded) / (max(recorded.values()) - began))
    deployment.latency_ms += [1000 * (recorded[s] - acknowledged[s]) for s in recorded]
    deployment.studies += list(recorded)


def _start(
    stack: ExitStack, root: Path, config: NodesBenchConfig, database: str, size: int
) -> Deployment:
    cores = sorted(os.sched_getaffinity(0))
    deployment = Deployment(size, database, root / f"nodes{size}" / "storage")
    for index in range(size):
        cpus = node_cpus(index, max(config.nodes), cores)
        log.info("bench --nodes: starting node %d of %d on cores %s", index + 1, size, cpus)
        service = start_service(
            root / f"nodes{size}" / f"node{index}",
            config.model.resolve(),
            config.engine,
            storage=deployment.storage,
            database=database,
            cpus=cpus,
        )
        stack.callback(service.stop)
        deployment.services.append(service)
    return deployment


def _screened_once(deployment: Deployment, store: Store) -> list[str]:
    """Problems: a study with more than one result, or one not analysed."""
    problems = []
    for study in deployment.studies:
        state = store.study_state(study)
        if state is None or state["version"] != 1:
            problems.append(
                f"{deployment.size} node(s): a study has result version "
                f"{None if state is None else state['version']}, not 1"
            )
        else:
            latest = store.latest_result(study)
            if latest is None or latest[1].status != "analyzed":
                deployment.outcomes.add("not_analyzed")
    return problems


def run_nodes_bench(config: NodesBenchConfig) -> Report:
    """Start PostgreSQL and the deployments, measure in interleaved rounds, stop everything."""
    began = time.perf_counter()
    load_start = load_average()
    load_package(config.model)  # a bad package is refused before anything starts
    studies = Studies(config.pool, config.study_size, config.seed)
    problems: list[str] = []
    with ExitStack() as stack:
        root = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="diagnostics-nodes-")))
        cluster = stack.enter_context(throwaway_cluster())
        deployments, stores = [], []
        for size in config.nodes:
            database = cluster.new_database()
            deployment = _start(stack, root, config, database, size)
            store = open_store(deployment.storage, database=database)
            stack.callback(store.close)
            deployments.append(deployment)
            stores.append(store)
            _burst(deployment, store, studies, size)  # warm-up: each node screens once
            deployment.rates.clear()
            deployment.latency_ms.clear()
        for number in range(config.rounds):
            log.info("bench --nodes: round %d of %d", number + 1, config.rounds)
            shift = number % len(deployments)
            for index in [*range(shift, len(deployments)), *range(shift)]:
                _burst(deployments[index], stores[index], studies, config.studies)
        for deployment, store in zip(deployments, stores, strict=True):
            problems += _screened_once(deployment, store)
    return _report(config, deployments, problems, load_start, time.perf_counter() - began)


def _ratios(deployments: list[Deployment]) -> dict[str, float]:
    """`nodes{N}_vs_nodes{M}`: each deployment's throughput over the first one's."""
    first = deployments[0]
    base = float(np.median(first.rates))
    return {
        f"nodes{d.size}_vs_nodes{first.size}": float(np.median(d.rates)) / base
        for d in deployments[1:]
    }


def _report(
    config: NodesBenchConfig,
    deployments: list[Deployment],
    problems: list[str],
    load_start: float | None,
    duration_s: float,
) -> Report:
    cores = sorted(os.sched_getaffinity(0))
    widest = max(config.nodes)
    ratios = _ratios(deployments)
    goals = goal_table(ratios, {k: v for k, v in NODES_GOALS.items() if k in ratios}, at_most={})
    warnings = run_warnings(load_start, config.quick) + problems
    if len(cores) < widest + 1:
        warnings.append(
            f"{len(cores)} cores for up to {widest} nodes plus PostgreSQL and the load generator: "
            "they share the nodes' cores, so the scaling measured is less than separate machines "
            "would give"
        )
    for deployment in deployments:
        odd = {k: v for k, v in deployment.outcomes.seen.items() if k != "stow_200"}
        if odd:
            warnings.append(f"{deployment.size} node(s): not every study went through: {odd}")
    return {
        "benchmark": "diagnostics bench --nodes",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": config.quick,
        "duration_s": duration_s,
        "method": {
            "deployments": "for each node count, that many `diagnostics serve` processes (1 "
            "HTTP worker each, --stable-seconds 0) on their own database of one throwaway "
            "PostgreSQL cluster and their own shared storage folder, all running side by side",
            "pinning": f"node i pinned to {max(1, len(cores) // widest)} of the {len(cores)} "
            "cores (sched_setaffinity, inherited by its workers); PostgreSQL and the load "
            "generator are not pinned",
            "burst": f"{config.studies} new single-image studies per round sent by STOW-RS, "
            "spread evenly over the nodes with one sender thread per node",
            "throughput": "studies / (last result recorded - first study sent), median over rounds",
            "latency": f"STOW-RS acknowledgement to the result in the store, polled every "
            f"{POLL_S} s",
            "interleaved": "each round runs every deployment once, the order rotating",
        },
        "environment": {
            "cpu": cpu_model(),
            "usable_cpus": len(cores),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "diagnostics": diagnostics.__version__,
            "engine": config.engine,
            "model": str(config.model),
            "load_average_1min_start": load_start,
            "load_average_1min_end": load_average(),
        },
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(config).items()},
        "deployments": [
            {
                "nodes": d.size,
                "studies_per_s": float(np.median(d.rates)),
                "rounds_studies_per_s": d.rates,
                "latency_ms": percentiles(d.latency_ms),
                "cold_start_s": [s.cold_start_s for s in d.services],
                "outcomes": d.outcomes.seen,
            }
            for d in deployments
        ],
        "ratios": ratios,
        "goals": goals,
        "warnings": warnings,
    }


def nodes_summary_lines(report: Report) -> list[str]:
    env = report["environment"]
    lines = [f"{env['cpu']}: {env['usable_cpus']} cores, engine {env['engine']}"]
    for deployment in report["deployments"]:
        latency = deployment["latency_ms"]
        lines.append(
            f"{deployment['nodes']} node(s): {deployment['studies_per_s']:.2f} studies/s; "
            f"latency p50 {latency['p50']:.0f} ms, p95 {latency['p95']:.0f} ms"
        )
    lines += [f"{name}: {value:.2f}" for name, value in report["ratios"].items()]
    return lines + goal_lines(report)
