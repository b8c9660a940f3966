"""OpenVINO inference for a model package: the same contract as `OnnxEngine`.

OpenVINO compiles the package's ONNX graph for the CPU it runs on and is often faster than ONNX
Runtime there (issue #17 measured 1.2-1.5x). It is only used behind a parity check against ONNX
Runtime (`diagnostics.screening.engines`), and always in fp32: its default on CPUs with BF16
would change logits by up to 0.1, which an operating point cannot absorb unchecked.

Every failure (compilation, a run error, wrong shapes, NaN, a run past the timeout) becomes an
`InferenceError` or `ModelPackageError`, as with ONNX Runtime.
"""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import openvino as ov

from diagnostics.errors import InferenceError, ModelPackageError
from diagnostics.package import INPUT_NAME, ModelPackage
from diagnostics.screening.engine import ChunkedEngine, default_threads

OV_ERRORS: tuple[type[BaseException], ...] = (RuntimeError, ValueError, TypeError)
"""What OpenVINO's Python API raises (its C++ exceptions arrive as RuntimeError)."""


class OpenVinoEngine(ChunkedEngine):
    """One compiled OpenVINO model over a verified package's `model.onnx`, fp32 on the CPU.

    Infer requests are not thread-safe, so each concurrent `run` borrows one from a small pool.
    """

    def __init__(
        self,
        package: ModelPackage,
        *,
        threads: int | None = None,
        max_batch: int = 16,
        timeout_s: float | None = 120.0,
        requests: int = 2,
    ) -> None:
        super().__init__(package, max_batch=max_batch, timeout_s=timeout_s)
        config = {
            "INFERENCE_PRECISION_HINT": "f32",
            "INFERENCE_NUM_THREADS": threads or default_threads(),
            "PERFORMANCE_HINT": "LATENCY",
        }
        try:
            core = ov.Core()
            self.compiled = core.compile_model(str(package.onnx_path), "CPU", config)
            self._pool: queue.SimpleQueue[ov.InferRequest] = queue.SimpleQueue()
            for _ in range(max(1, requests)):
                self._pool.put(self.compiled.create_infer_request())
        except OV_ERRORS as exc:
            raise ModelPackageError(
                f"{package.onnx_path}: OpenVINO cannot compile the model: {exc}"
            ) from exc

    @contextmanager
    def _request(self) -> Iterator[ov.InferRequest]:
        try:
            request = self._pool.get_nowait()
        except queue.Empty:
            request = self.compiled.create_infer_request()  # more callers than pooled requests
        try:
            yield request
        finally:
            self._pool.put(request)

    def _run_chunk(self, chunk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        with self._request() as request:
            try:
                request.start_async({INPUT_NAME: chunk})
                if self.timeout_s is None:
                    request.wait()
                elif not request.wait_for(int(self.timeout_s * 1000)):
                    request.cancel()
                    raise InferenceError(
                        f"inference took longer than the {self.timeout_s} s timeout and was stopped"
                    )
                # Copies: the request's output buffers are reused by its next run.
                logits = np.array(request.get_tensor("logits").data)
                cams = np.array(request.get_tensor("cam").data)
            except OV_ERRORS as exc:
                raise InferenceError(f"OpenVINO failed: {exc}") from exc
        return logits, cams
