"""Choosing the inference runtime for a package on this machine: ONNX Runtime or OpenVINO.

ONNX Runtime is the reference: the package's operating points were chosen on its outputs.
OpenVINO is used only when its calibrated probabilities match ONNX Runtime's within
`PARITY_LIMIT` on the same inputs, checked when the engine is opened; a package it cannot
match is refused (when asked for by name) or served by ONNX Runtime (under `auto`).

`auto` also measures: after the parity check both engines run the same batches, interleaved, a
few times, and the faster one is kept. The measurement costs about a second at start and is
made per process, because which runtime wins depends on the CPU and on the graph.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Literal

import numpy as np

from diagnostics.constants import ENGINE_CHOICES
from diagnostics.errors import DiagnosticsError, InferenceError, ModelPackageError
from diagnostics.package import ModelPackage
from diagnostics.screening.engine import Engine, EngineOutput, OnnxEngine

logger = logging.getLogger(__name__)

EngineChoice = Literal["onnxruntime", "openvino", "auto"]
"""One of `diagnostics.constants.ENGINE_CHOICES` (a test keeps the two equal)."""
PARITY_LIMIT = 1e-4
"""Largest allowed difference of calibrated probabilities between OpenVINO and ONNX Runtime."""
WARMUP_ROUNDS = 5


@dataclass(frozen=True)
class Parity:
    max_probability_difference: float
    max_logit_difference: float

    @property
    def ok(self) -> bool:
        return self.max_probability_difference <= PARITY_LIMIT


def probe_batch(package: ModelPackage, n: int = 4, seed: int = 0) -> np.ndarray:
    """Deterministic model inputs in the preprocessed range [0, 1]."""
    tensor = package.manifest.input
    rng = np.random.default_rng(seed)
    return rng.random((n, tensor.channels, tensor.height, tensor.width), dtype=np.float32)


def parity(package: ModelPackage, reference: EngineOutput, other: EngineOutput) -> Parity:
    """How far `other`'s outputs are from `reference`'s, in logits and calibrated probabilities."""
    worst = 0.0
    for index, finding in enumerate(package.manifest.findings):
        calibration = package.manifest.calibration[finding.code]
        ref = calibration.probability(reference.logits[:, index].astype(np.float64))
        got = calibration.probability(other.logits[:, index].astype(np.float64))
        worst = max(worst, float(np.max(np.abs(ref - got))))
    logits = float(np.max(np.abs(reference.logits - other.logits)))
    return Parity(worst, logits)


def open_engine(
    package: ModelPackage,
    choice: EngineChoice = "onnxruntime",
    *,
    threads: int | None = None,
    max_batch: int = 16,
    timeout_s: float | None = 120.0,
) -> Engine:
    """The engine to screen with (see the module docstring for how `choice` is applied)."""
    if choice not in ENGINE_CHOICES:
        raise ModelPackageError(f"unknown engine {choice!r}; choose one of {ENGINE_CHOICES}")
    reference = OnnxEngine(package, threads=threads, max_batch=max_batch, timeout_s=timeout_s)
    if choice == "onnxruntime":
        return reference
    try:
        from diagnostics.screening.openvino_engine import OpenVinoEngine

        candidate = OpenVinoEngine(
            package, threads=threads, max_batch=max_batch, timeout_s=timeout_s
        )
        probe = probe_batch(package)
        measured = parity(package, reference.run(probe), candidate.run(probe))
    except (ImportError, DiagnosticsError) as exc:
        if choice == "openvino":
            raise ModelPackageError(f"OpenVINO cannot serve {package.path}: {exc}") from exc
        logger.warning("OpenVINO unavailable for this package (%s); using ONNX Runtime", exc)
        return reference
    if not measured.ok:
        message = (
            f"OpenVINO's probabilities differ from ONNX Runtime's by "
            f"{measured.max_probability_difference:.2e} (limit {PARITY_LIMIT:.0e})"
        )
        if choice == "openvino":
            raise ModelPackageError(f"{package.path}: {message}; use the onnxruntime engine")
        logger.warning("%s; using ONNX Runtime", message)
        return reference
    if choice == "openvino":
        return candidate
    faster = _faster(reference, candidate, probe)
    logger.info(
        "engine: %s chosen by a warm-up measurement (probability parity %.1e)",
        type(faster).__name__,
        measured.max_probability_difference,
    )
    return faster


def _faster(reference: Engine, candidate: Engine, probe: np.ndarray) -> Engine:
    """The engine with the lower median time over interleaved rounds of the same batch."""
    engines = [reference, candidate]
    times: list[list[float]] = [[], []]
    for _ in range(WARMUP_ROUNDS):
        for index, engine in enumerate(engines):
            start = time.perf_counter()
            try:
                engine.run(probe)
            except InferenceError:
                times[index].append(float("inf"))
                continue
            times[index].append(time.perf_counter() - start)
    medians = [float(np.median(t)) for t in times]
    return engines[int(np.argmin(medians))]
