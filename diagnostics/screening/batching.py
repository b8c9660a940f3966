"""Adaptive batching: concurrent screening requests share one model call.

A service answering many small requests (one radiograph each) wastes most of the CPU on
per-call overhead. `MicroBatcher` has the engine's interface; calls that arrive while another
is being gathered wait up to `max_wait_s` and go to the model together, up to `max_batch`
images. A failed combined call is retried request by request, so one bad image can only fail
its own study.
"""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from diagnostics.errors import InferenceError
from diagnostics.screening.engine import Engine, EngineOutput


@dataclass
class _Request:
    images: np.ndarray
    future: Future[EngineOutput] = field(default_factory=Future)


class MicroBatcher:
    """Wraps an engine (`OnnxEngine`, `OpenVinoEngine`); `run` may be called from many threads
    at once."""

    def __init__(
        self, engine: Engine, *, max_batch: int | None = None, max_wait_s: float = 0.005
    ) -> None:
        self.engine = engine
        self.package = engine.package
        self.input_shape = engine.input_shape
        self.max_batch = max_batch or engine.max_batch
        self.max_wait_s = max_wait_s
        self.model_calls = 0
        """Combined calls made so far (for metrics and tests)."""
        self._queue: list[_Request] = []
        self._condition = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="micro-batcher", daemon=True)
        self._thread.start()

    def run(self, images: np.ndarray) -> EngineOutput:
        request = _Request(np.ascontiguousarray(images, dtype=np.float32))
        with self._condition:
            if self._closed or not self._thread.is_alive():
                raise InferenceError("the model is shutting down")
            self._queue.append(request)
            self._condition.notify()
        return request.future.result()

    def close(self) -> None:
        with self._condition:
            self._closed = True
            self._condition.notify()
        self._thread.join(5.0)

    def _serve(self) -> None:
        while True:
            batch = self._gather()
            if batch is None:
                return
            self._run(batch)

    def _gather(self) -> list[_Request] | None:
        with self._condition:
            while not self._queue and not self._closed:
                self._condition.wait()
            if not self._queue:
                return None
            deadline = time.monotonic() + self.max_wait_s
            while sum(len(r.images) for r in self._queue) < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    break
                self._condition.wait(left)
            batch: list[_Request] = []
            size = 0
            while self._queue and (
                not batch or size + len(self._queue[0].images) <= self.max_batch
            ):
                request = self._queue.pop(0)
                batch.append(request)
                size += len(request.images)
            return batch

    def _run(self, batch: list[_Request]) -> None:
        self.model_calls += 1
        try:
            output = self.engine.run(np.concatenate([r.images for r in batch]))
        except InferenceError as exc:
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
                return
            for request in batch:  # isolate the fault: each request on its own
                self._run([request])
            return
        # Anything else would end this thread with callers waiting forever: hand it to them.
        except BaseException as exc:
            for request in batch:
                request.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for request in batch:
            end = start + len(request.images)
            request.future.set_result(
                EngineOutput(output.logits[start:end], output.cams[start:end])
            )
            start = end
