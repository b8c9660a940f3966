"""The load side of `diagnostics bench --service`: the studies sent (synthetic images with
fresh UIDs, so each is new to the service), one-at-a-time and many-threads timing, percentiles."""

from __future__ import annotations

import dataclasses
import io
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.uid import ExplicitVRLittleEndian, generate_uid


class Studies:
    """Synthetic single-image studies, uncompressed; `fresh()` is one of them with new UIDs."""

    def __init__(self, pool: int, size: int, seed: int) -> None:
        from diagnostics.synth.dx import build_dx
        from diagnostics.synth.study import SynthConfig, make_study

        synth = SynthConfig(rows=size, columns=size, compressed_fraction=0.0)
        self._pool: list[Dataset] = []
        for index in range(pool):
            _, pixels, patient, acquisition = make_study(seed, index, index, synth)
            acquisition = dataclasses.replace(acquisition, transfer_syntax=ExplicitVRLittleEndian)
            buffer = io.BytesIO()
            build_dx(pixels, patient, acquisition).save_as(buffer, enforce_file_format=True)
            self._pool.append(dcmread(io.BytesIO(buffer.getvalue())))
        self._next = 0
        self.sizes: list[int] = []

    def fresh(self) -> tuple[str, bytes]:
        dataset = self._pool[self._next % len(self._pool)]
        self._next += 1
        study = generate_uid()
        dataset.StudyInstanceUID = study
        dataset.SeriesInstanceUID = generate_uid()
        dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        buffer = io.BytesIO()
        dataset.save_as(buffer, enforce_file_format=True)
        self.sizes.append(buffer.tell())
        return study, buffer.getvalue()

    def batch(self, count: int) -> list[bytes]:
        return [self.fresh()[1] for _ in range(count)]


class Counts:
    """Outcomes seen, so a run that measured refusals or 202s says so."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.seen: dict[str, int] = {}

    def add(self, key: str) -> None:
        with self._lock:
            self.seen[key] = self.seen.get(key, 0) + 1


def sequential_ms(call: Callable[[bytes], None], studies: Sequence[bytes]) -> list[float]:
    """Milliseconds of each call, one study after the other."""
    times = []
    for data in studies:
        began = time.perf_counter()
        call(data)
        times.append(1000 * (time.perf_counter() - began))
    return times


def concurrent_rate(
    make_call: Callable[[], tuple[Callable[[bytes], None], Callable[[], None]]],
    studies: Sequence[bytes],
    threads: int,
) -> float:
    """Studies/s of `threads` threads taking studies from one queue. `make_call` gives each
    thread its call and a closing function (an HTTP connection of its own), outside the time."""
    calls = [make_call() for _ in range(threads)]
    queue = list(studies)
    lock = threading.Lock()

    def work(call: Callable[[bytes], None]) -> None:
        while True:
            with lock:
                if not queue:
                    return
                data = queue.pop()
            call(data)

    with ThreadPoolExecutor(threads, thread_name_prefix="bench-client") as pool:
        began = time.perf_counter()
        for future in [pool.submit(work, call) for call, _ in calls]:
            future.result()
        elapsed = time.perf_counter() - began
    for _, close in calls:
        close()
    return len(studies) / elapsed


def percentiles(values: Sequence[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    return {
        "p50": float(np.percentile(array, 50)),
        "p95": float(np.percentile(array, 95)),
        "mean": float(array.mean()),
        "count": int(array.size),
    }
