"""Adaptive batching: concurrent callers share model calls and get their own answers."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from diagnostics.errors import InferenceError
from diagnostics.package import ModelPackage
from diagnostics.screening import Screener
from diagnostics.screening.batching import MicroBatcher
from diagnostics.screening.engine import OnnxEngine
from tests.helpers.synth import SynthStudies


def _images(package: ModelPackage, n: int, seed: int) -> np.ndarray:
    m = package.manifest.input
    return np.random.default_rng(seed).random((n, m.channels, m.height, m.width), dtype=np.float32)


def test_concurrent_requests_share_calls_and_keep_their_answers(bundled: ModelPackage) -> None:
    engine = OnnxEngine(bundled)
    batcher = MicroBatcher(engine, max_wait_s=0.2)
    inputs = [_images(bundled, 1 + i % 2, seed=i) for i in range(6)]
    expected = [engine.run(x) for x in inputs]
    got: dict[int, np.ndarray] = {}
    barrier = threading.Barrier(len(inputs))

    def call(i: int) -> None:
        barrier.wait()
        got[i] = batcher.run(inputs[i]).logits

    threads = [threading.Thread(target=call, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert batcher.model_calls < len(inputs)  # requests were merged
    for i, want in enumerate(expected):
        np.testing.assert_allclose(got[i], want.logits, atol=1e-5)
    batcher.close()


def test_a_bad_request_fails_alone(bundled: ModelPackage) -> None:
    batcher = MicroBatcher(OnnxEngine(bundled), max_wait_s=0.2)
    good = _images(bundled, 1, seed=1)
    bad = np.full_like(good, np.nan)
    results: dict[str, object] = {}

    def call(name: str, images: np.ndarray) -> None:
        try:
            results[name] = batcher.run(images)
        except InferenceError as exc:
            results[name] = exc

    threads = [threading.Thread(target=call, args=a) for a in (("good", good), ("bad", bad))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert isinstance(results["bad"], InferenceError)
    assert not isinstance(results["good"], InferenceError)
    batcher.close()
    with pytest.raises(InferenceError, match="shutting down"):
        batcher.run(good)


def test_screener_with_batching_gives_the_same_results(
    bundled: ModelPackage, synth_studies: SynthStudies
) -> None:
    files = synth_studies.files[:2]
    plain = Screener.load(bundled).screen(files)
    batched = Screener.load(bundled, batch_wait_s=0.01).screen(files)
    for a, b in zip(plain.outcomes, batched.outcomes, strict=True):
        for fa, fb in zip(a.result.findings, b.result.findings, strict=True):
            assert fa.probability == pytest.approx(fb.probability, abs=1e-5)


def test_an_unexpected_error_reaches_every_caller(bundled: ModelPackage) -> None:
    """Requests that cannot even be stacked together must fail, not hang."""
    batcher = MicroBatcher(OnnxEngine(bundled), max_wait_s=0.3)
    results: dict[int, object] = {}
    shapes = [(1, 1, 320, 320), (1, 1, 64, 64)]

    def call(i: int) -> None:
        try:
            results[i] = batcher.run(np.zeros(shapes[i], dtype=np.float32))
        except (InferenceError, ValueError) as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads), "a caller hangs"
    assert len(results) == 2 and isinstance(results[1], Exception)
    with pytest.raises(InferenceError, match="input shape"):
        batcher.run(np.zeros((0, 1, 320, 320), dtype=np.float32))
    batcher.close()
