"""The ONNX Runtime engine: batching, outputs, and every fault becoming an InferenceError."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from diagnostics.errors import InferenceError, ModelPackageError
from diagnostics.package import ModelPackage, load_package
from diagnostics.screening.engine import OnnxEngine, choose_providers
from tests.screening.faults import broken_package, nan_logits, out_of_range_gather


def _inputs(package: ModelPackage, n: int, seed: int = 0) -> np.ndarray:
    shape = (
        package.manifest.input.channels,
        package.manifest.input.height,
        package.manifest.input.width,
    )
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def test_chunked_batches_equal_one_batch(bundled: ModelPackage) -> None:
    images = _inputs(bundled, 7)
    whole = OnnxEngine(bundled, max_batch=16).run(images)
    chunked = OnnxEngine(bundled, max_batch=3).run(images)
    assert whole.logits.shape == (7, len(bundled.manifest.findings))
    assert whole.cams.shape[:2] == (7, len(bundled.manifest.findings))
    np.testing.assert_allclose(chunked.logits, whole.logits, atol=1e-5)
    np.testing.assert_allclose(chunked.cams, whole.cams, atol=1e-4)


def test_each_image_is_answered_independently_of_its_batch(bundled: ModelPackage) -> None:
    images = _inputs(bundled, 4, seed=1)
    engine = OnnxEngine(bundled)
    together = engine.run(images)
    alone = engine.run(images[2:3])
    np.testing.assert_allclose(alone.logits[0], together.logits[2], atol=1e-5)


def test_wrong_input_shape_is_refused(bundled: ModelPackage) -> None:
    with pytest.raises(InferenceError, match="input shape"):
        OnnxEngine(bundled).run(np.zeros((1, 1, 64, 64), dtype=np.float32))


def test_nan_input_is_an_error_not_an_answer(bundled: ModelPackage) -> None:
    images = np.full((1, 1, bundled.manifest.input.height, bundled.manifest.input.width), np.nan)
    with pytest.raises(InferenceError, match="NaN"):
        OnnxEngine(bundled).run(images.astype(np.float32))


def test_model_that_outputs_nan_raises(bundled: ModelPackage, tmp_path: Path) -> None:
    package = broken_package(bundled, tmp_path, nan_logits)
    with pytest.raises(InferenceError, match="NaN or infinite"):
        OnnxEngine(package).run(_inputs(bundled, 2))


def test_runtime_failure_raises(bundled: ModelPackage, tmp_path: Path) -> None:
    package = broken_package(bundled, tmp_path, out_of_range_gather)
    with pytest.raises(InferenceError, match=r"onnxruntime failed.*out of data bounds"):
        OnnxEngine(package).run(_inputs(bundled, 2))


def test_timeout_stops_the_run(bundled: ModelPackage) -> None:
    engine = OnnxEngine(bundled, timeout_s=0.001, max_batch=16)
    with pytest.raises(InferenceError, match="timeout"):
        engine.run(_inputs(bundled, 16))
    engine.timeout_s = None  # the same session stays usable after a cancelled run
    assert engine.run(_inputs(bundled, 1)).logits.shape[0] == 1


def test_model_file_missing_at_load(bundled: ModelPackage, tmp_path: Path) -> None:
    gone = load_package(shutil.copytree(bundled.path, tmp_path / "pkg"))
    gone.onnx_path.unlink()  # removed after it was verified
    with pytest.raises(ModelPackageError, match="cannot load"):
        OnnxEngine(gone)


def test_unavailable_provider_is_named() -> None:
    with pytest.raises(InferenceError, match="NoSuchExecutionProvider"):
        choose_providers(["NoSuchExecutionProvider"])
    assert choose_providers()[-1] == "CPUExecutionProvider"


def test_bad_settings_are_refused(bundled: ModelPackage) -> None:
    with pytest.raises(InferenceError, match="max_batch"):
        OnnxEngine(bundled, max_batch=0)
    with pytest.raises(InferenceError, match="timeout_s"):
        OnnxEngine(bundled, timeout_s=0)
