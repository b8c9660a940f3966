"""How `diagnostics bench` times things: interleaved rounds, and the machine they ran on."""

from __future__ import annotations

import os
import platform
import resource
import time
from collections.abc import Mapping
from pathlib import Path

from diagnostics.bench.config import Runner


def time_interleaved(
    runners: Mapping[str, Runner], *, warmup: int, rounds: int, min_rounds: int, max_seconds: float
) -> dict[str, list[float]]:
    """Seconds per call of each runner: all warm up, then one call each per round, rotating
    the order; stops after `rounds`, or earlier once `max_seconds` passed and `min_rounds` ran."""
    names = list(runners)
    for name in names:
        for _ in range(warmup):
            runners[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    for done in range(rounds):
        if done >= min_rounds and time.perf_counter() - start > max_seconds:
            break
        for name in names[done % len(names) :] + names[: done % len(names)]:
            began = time.perf_counter()
            runners[name]()
            times[name].append(time.perf_counter() - began)
    return times


def seconds(call: Runner) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def peak_rss_mib() -> float:
    """The process's peak resident memory so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - platforms without getloadavg
        return None
