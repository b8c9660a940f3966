"""ONNX export: the graph honours the package contract, and a graph that disagrees is refused.

Serving only ever runs the ONNX file, so the parity check is the one place where a silently
wrong export (another model's weights, a broken op) can be caught before it reaches patients.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

import diagnostics.train.onnx_export as export_module
from diagnostics.dicom import read_instance
from diagnostics.errors import ModelPackageError
from diagnostics.nets import LSE_SHARPNESS, CamNet, build_model
from diagnostics.preprocess import PreprocessSpec, preprocess_image
from diagnostics.synth.study import SynthConfig, generate
from diagnostics.train.onnx_export import PARITY_TOLERANCE, export_checked

SPEC = PreprocessSpec(size=(64, 64))
FINDINGS = 3


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> torch.Tensor:
    """Five real synthetic radiographs through the serving preprocessing: (5, 1, 64, 64)."""
    folder = tmp_path_factory.mktemp("export-data")
    truths = generate(folder, 5, seed=21, config=SynthConfig(rows=96, columns=96, spacing_mm=4.0))
    images = [preprocess_image(read_instance(folder / t.file), SPEC) for t in truths]
    return torch.stack(images)


def _model(seed: int) -> CamNet:
    torch.manual_seed(seed)
    return build_model("compact", 1, FINDINGS).eval()


def _reference(model: CamNet, batch: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    with torch.inference_mode():
        logits, cam = model.forward_with_cam(batch)
    return logits.numpy(), cam.numpy()


@pytest.fixture(scope="module")
def exported(
    inputs: torch.Tensor, tmp_path_factory: pytest.TempPathFactory
) -> tuple[CamNet, Path, dict[str, float]]:
    """One export shared by the contract tests: traced at batch 1, checked at batches 1 and 2."""
    model = _model(0)
    path = tmp_path_factory.mktemp("export") / "model.onnx"
    return model, path, export_checked(model, inputs[:2], path)


def test_export_writes_a_checked_graph_with_the_contracts_names(
    exported: tuple[CamNet, Path, dict[str, float]],
) -> None:
    _, path, worst = exported
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    assert set(worst) == {"probability", "logit", "cam"}
    assert all(0.0 <= value < PARITY_TOLERANCE for value in worst.values())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    assert [o.name for o in session.get_outputs()] == ["logits", "cam"]
    assert session.get_inputs()[0].type == "tensor(float)"
    assert isinstance(session.get_inputs()[0].shape[0], str)  # symbolic batch axis


@pytest.mark.parametrize("batch", [1, 5])
def test_exported_graph_matches_pytorch_at_any_batch_size(
    exported: tuple[CamNet, Path, dict[str, float]], inputs: torch.Tensor, batch: int
) -> None:
    """Traced at batch 1; batch 5 (more than the parity check used) proves the axis is dynamic."""
    model, path, _ = exported
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    logits, cam = session.run(["logits", "cam"], {"image": inputs[:batch].numpy()})
    expected_logits, expected_cam = _reference(model, inputs[:batch])
    assert logits.shape == (batch, FINDINGS)
    assert cam.shape == (batch, FINDINGS, 4, 4)  # compact: output stride 16
    np.testing.assert_allclose(logits, expected_logits, atol=1e-4)
    np.testing.assert_allclose(cam, expected_cam, atol=1e-4)
    pooled = np.log(np.exp(LSE_SHARPNESS * cam.astype(np.float64)).mean(axis=(2, 3)))
    np.testing.assert_allclose(pooled / LSE_SHARPNESS, logits, atol=1e-4)


def test_a_model_trained_in_channels_last_exports_the_same(
    inputs: torch.Tensor, tmp_path: Path
) -> None:
    """Training leaves the model channels-last; export must not depend on memory format."""
    model = _model(2)
    expected_logits, _ = _reference(model, inputs)
    model.to(memory_format=torch.channels_last)
    path = tmp_path / "model.onnx"
    export_checked(model, inputs, path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"image": inputs.numpy()})
    np.testing.assert_allclose(logits, expected_logits, atol=1e-4)


def test_a_graph_from_another_model_is_refused_and_deleted(
    inputs: torch.Tensor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inject the fault: the exporter writes a different, randomly initialised model's graph."""
    genuine_export = export_module.export_onnx
    impostor = _model(99)

    def export_impostor(model: CamNet, sample: torch.Tensor, path: Path) -> None:
        genuine_export(impostor, sample, path)

    monkeypatch.setattr(export_module, "export_onnx", export_impostor)
    path = tmp_path / "model.onnx"
    with pytest.raises(ModelPackageError, match="disagree"):
        export_checked(_model(0), inputs, path)
    assert not path.exists()


@pytest.mark.parametrize("shape", [(1, 1, 64, 64), (1, 64, 64)])
def test_parity_needs_a_batch_of_at_least_two(
    inputs: torch.Tensor, tmp_path: Path, shape: tuple[int, ...]
) -> None:
    with pytest.raises(ValueError, match="at least two"):
        export_checked(_model(0), inputs[:1].reshape(shape), tmp_path / "model.onnx")
    assert not (tmp_path / "model.onnx").exists()
