"""ONNX Runtime inference for a model package: batched, checked, and cancellable.

Every way the runtime can fail to give a usable answer (a runtime error, an output of the wrong
shape, NaN or infinity, a run longer than the timeout) becomes an `InferenceError`, which
screening reports as a failed study, never as "no findings".
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import onnxruntime as ort
from onnxruntime.capi import onnxruntime_pybind11_state as ort_state

from diagnostics.errors import InferenceError, ModelPackageError
from diagnostics.package import ModelPackage

ORT_ERRORS: tuple[type[BaseException], ...] = (
    ort_state.Fail,
    ort_state.RuntimeException,
    ort_state.InvalidArgument,
    ort_state.NoSuchFile,
    ort_state.InvalidGraph,
    ort_state.InvalidProtobuf,
    ort_state.EPFail,
    ort_state.NotImplemented,
    ort_state.EngineError,
    RuntimeError,
    ValueError,
)
"""What onnxruntime raises: its own pybind11 classes (not RuntimeError subclasses) and, from
its Python layer, RuntimeError and ValueError."""

GPU_PROVIDERS = ("CUDAExecutionProvider",)


@dataclass(frozen=True)
class EngineOutput:
    logits: np.ndarray
    """float32 (N, K)."""
    cams: np.ndarray
    """float32 (N, K, h, w)."""


class Engine(Protocol):
    """What screening needs from a model runner (`OnnxEngine`, or `MicroBatcher` around one)."""

    package: ModelPackage
    input_shape: tuple[int, int, int]
    max_batch: int

    def run(self, images: np.ndarray) -> EngineOutput: ...


def default_threads() -> int:
    """Intra-op threads: the cores this process may use (containers restrict the affinity)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - platforms without sched_getaffinity
        return max(1, os.cpu_count() or 1)


def choose_providers(requested: Sequence[str] | None = None) -> list[str]:
    """GPU first when this onnxruntime build has one, CPU always as the fallback."""
    available = ort.get_available_providers()
    if requested is not None:
        missing = [p for p in requested if p not in available]
        if missing:
            raise InferenceError(
                f"execution provider(s) {missing} are not available in this onnxruntime build "
                f"(available: {available})"
            )
        return list(requested)
    return [p for p in GPU_PROVIDERS if p in available] + ["CPUExecutionProvider"]


class ChunkedEngine:
    """What every runtime shares: the package's input shape, chunks of at most `max_batch`
    images (so memory stays bounded), and checked outputs. Subclasses run one chunk."""

    def __init__(self, package: ModelPackage, *, max_batch: int, timeout_s: float | None) -> None:
        if max_batch < 1:
            raise InferenceError(f"max_batch must be at least 1, not {max_batch}")
        if timeout_s is not None and timeout_s <= 0:
            raise InferenceError(f"timeout_s must be positive, not {timeout_s}")
        manifest = package.manifest
        self.package = package
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self.input_shape: tuple[int, int, int] = (
            manifest.input.channels,
            manifest.input.height,
            manifest.input.width,
        )
        self.findings = len(manifest.findings)

    def run(self, images: np.ndarray) -> EngineOutput:
        """(N, C, H, W) float32 model inputs -> logits and CAMs, checked."""
        images = np.ascontiguousarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[1:] != self.input_shape or len(images) == 0:
            raise InferenceError(
                f"input shape {images.shape} does not match the model's (N, *{self.input_shape})"
            )
        logits: list[np.ndarray] = []
        cams: list[np.ndarray] = []
        for start in range(0, len(images), self.max_batch):
            chunk = images[start : start + self.max_batch]
            chunk_logits, chunk_cams = check_outputs(
                len(chunk), self.findings, *self._run_chunk(chunk)
            )
            logits.append(chunk_logits)
            cams.append(chunk_cams)
        return EngineOutput(np.concatenate(logits), np.concatenate(cams))

    def _run_chunk(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The runtime's raw logits and CAMs for one chunk (checked by `run`)."""
        raise NotImplementedError


class OnnxEngine(ChunkedEngine):
    """One ONNX Runtime session over a verified package's `model.onnx`.

    Sessions are thread-safe for `run`; one engine serves a whole process.
    """

    def __init__(
        self,
        package: ModelPackage,
        *,
        threads: int | None = None,
        max_batch: int = 16,
        timeout_s: float | None = 120.0,
        providers: Sequence[str] | None = None,
    ) -> None:
        super().__init__(package, max_batch=max_batch, timeout_s=timeout_s)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = threads or default_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 4  # failures are raised, not logged
        try:
            self.session = ort.InferenceSession(
                str(package.onnx_path), sess_options=options, providers=choose_providers(providers)
            )
        except ORT_ERRORS as exc:
            raise ModelPackageError(
                f"{package.onnx_path}: onnxruntime cannot load the model: {exc}"
            ) from exc
        self.providers = tuple(self.session.get_providers())

    def _run_chunk(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        options = ort.RunOptions()
        timer = None
        if self.timeout_s is not None:
            # terminate is checked between graph nodes, so a stuck run stops at the next node.
            timer = threading.Timer(self.timeout_s, _terminate, args=(options,))
            timer.daemon = True
            timer.start()
        try:
            logits, cams = self.session.run(["logits", "cam"], {"image": chunk}, options)
        except ORT_ERRORS as exc:
            if options.terminate:
                raise InferenceError(
                    f"inference took longer than the {self.timeout_s} s timeout and was stopped"
                ) from exc
            raise InferenceError(f"onnxruntime failed: {exc}") from exc
        finally:
            if timer is not None:
                timer.cancel()
        return np.asarray(logits), np.asarray(cams)


def check_outputs(
    n: int, k: int, logits: np.ndarray, cams: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A runtime's outputs for `n` images and `k` findings, or `InferenceError` when their
    shapes are wrong or any value is NaN or infinite (never a silent "no findings")."""
    if logits.shape != (n, k) or cams.ndim != 4 or cams.shape[:2] != (n, k):
        raise InferenceError(
            f"model outputs have the wrong shape: logits {logits.shape}, cam {cams.shape} "
            f"for {n} images and {k} findings"
        )
    if not (np.isfinite(logits).all() and np.isfinite(cams).all()):
        raise InferenceError("the model produced NaN or infinite outputs")
    return logits.astype(np.float32, copy=False), cams.astype(np.float32, copy=False)


def _terminate(options: ort.RunOptions) -> None:
    options.terminate = True
