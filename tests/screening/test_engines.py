"""Choosing the runtime: OpenVINO only behind a parity check against ONNX Runtime."""

from __future__ import annotations

import typing
from pathlib import Path

import numpy as np
import pytest

from diagnostics.constants import ENGINE_CHOICES
from diagnostics.errors import InferenceError, ModelPackageError
from diagnostics.package import ModelPackage, load_package
from diagnostics.screening import engines
from diagnostics.screening.engine import OnnxEngine
from diagnostics.screening.engines import open_engine, parity, probe_batch
from diagnostics.screening.openvino_engine import OpenVinoEngine
from diagnostics.screening.pipeline import Screener
from diagnostics.synth import SynthConfig, generate

BUNDLED = Path(__file__).resolve().parents[2] / "models" / "cxr-demo"


@pytest.fixture(scope="module")
def package() -> ModelPackage:
    return load_package(BUNDLED)


def test_openvino_matches_onnx_runtime_on_the_bundled_model(package: ModelPackage) -> None:
    batch = probe_batch(package, n=3, seed=7)
    reference = OnnxEngine(package, timeout_s=None).run(batch)
    other = OpenVinoEngine(package, timeout_s=None).run(batch)
    assert other.logits.shape == reference.logits.shape
    assert other.cams.shape == reference.cams.shape
    measured = parity(package, reference, other)
    assert measured.ok, measured
    assert np.allclose(other.cams, reference.cams, atol=1e-3)


def test_openvino_engine_splits_batches_and_checks_shapes(package: ModelPackage) -> None:
    engine = OpenVinoEngine(package, max_batch=2, timeout_s=None)
    out = engine.run(probe_batch(package, n=5))
    assert out.logits.shape == (5, len(package.finding_codes))
    with pytest.raises(InferenceError, match="does not match"):
        engine.run(np.zeros((1, 1, 8, 8), np.float32))


@pytest.mark.parametrize("choice", ["openvino", "auto"])
def test_a_parity_failure_refuses_openvino(
    package: ModelPackage, choice: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Any real difference is larger than a negative limit: the check must notice.
    monkeypatch.setattr(engines, "PARITY_LIMIT", -1.0)
    if choice == "openvino":
        with pytest.raises(ModelPackageError, match="differ from ONNX Runtime"):
            open_engine(package, "openvino")
    else:
        assert isinstance(open_engine(package, "auto"), OnnxEngine)


def test_choices(package: ModelPackage) -> None:
    assert isinstance(open_engine(package, "onnxruntime"), OnnxEngine)
    assert isinstance(open_engine(package, "openvino"), OpenVinoEngine)
    assert isinstance(open_engine(package, "auto"), OnnxEngine | OpenVinoEngine)
    with pytest.raises(ModelPackageError, match="unknown engine"):
        open_engine(package, "tensorrt")  # type: ignore[arg-type]


def test_screening_with_openvino_gives_the_results_of_onnx_runtime(
    package: ModelPackage, tmp_path: Path
) -> None:
    generate(tmp_path, 3, 5, SynthConfig(rows=256, columns=256, spacing_mm=409.6 / 256))
    files = sorted(tmp_path.rglob("*.dcm"))
    results = [
        {
            o.result.study_instance_uid: o.result
            for o in Screener.load(package, engine=choice).screen(files).outcomes
        }
        for choice in ("onnxruntime", "openvino")
    ]
    assert results[0].keys() == results[1].keys() and len(results[0]) == 3
    for uid, reference in results[0].items():
        other = results[1][uid]
        assert other.status == reference.status == "analyzed"
        for a, b in zip(reference.findings, other.findings, strict=True):
            assert a.code == b.code and a.flagged == b.flagged
            assert abs(a.probability - b.probability) <= engines.PARITY_LIMIT


def test_the_command_line_offers_exactly_the_engines_there_are() -> None:
    assert set(ENGINE_CHOICES) == set(typing.get_args(engines.EngineChoice))
