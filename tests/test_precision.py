"""INT8 package variants: quantized from the bundled package, published only when held-out
accuracy is kept, and refused (nothing written) when it is not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from diagnostics import precision
from diagnostics.datasets import load_dataset
from diagnostics.errors import ModelPackageError
from diagnostics.package import MODEL_FILE, ModelPackage, load_package
from diagnostics.precision import reduced_precision_package
from diagnostics.screening.engine import OnnxEngine
from diagnostics.synth import SynthConfig, generate

BUNDLED = Path(__file__).resolve().parents[1] / "models" / "cxr-demo"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Small synthetic train and test folders over the bundled model's field of view."""
    root = tmp_path_factory.mktemp("precision-data")
    config = SynthConfig(rows=96, columns=96, spacing_mm=409.6 / 96)
    generate(root / "train", 16, 11, config)
    generate(root / "test", 40, 12, config)
    return root / "train", root / "test"


@pytest.fixture(scope="module")
def bundled() -> ModelPackage:
    return load_package(BUNDLED)


def test_variant_is_int8_and_published_only_when_accuracy_is_kept(
    bundled: ModelPackage, data: tuple[Path, Path], tmp_path: Path
) -> None:
    train, test = data
    out = tmp_path / "int8"
    try:
        result = reduced_precision_package(bundled, out, train_root=train, test_root=test)
    except ModelPackageError as exc:
        # A refusal is allowed, but only with the numbers, and nothing may be left behind.
        assert "does not keep accuracy" in str(exc)
        assert not out.exists()
        return
    assert all(c.kept for c in result.checks)
    assert result.worst_auroc_drop <= precision.AUROC_DROP_LIMIT
    package = load_package(out)
    manifest = package.manifest
    assert manifest.precision == "int8"
    assert manifest.version == f"{bundled.manifest.version}+int8"
    assert manifest.sha256 != bundled.manifest.sha256
    recorded = manifest.metrics["precision_check"]
    assert isinstance(recorded, dict)
    assert set(recorded["findings"]) == set(bundled.finding_codes)  # type: ignore[arg-type]
    # The graph really is quantized: QDQ pairs around the convolutions.
    graph = onnx.load(str(out / MODEL_FILE)).graph
    assert any(node.op_type == "QuantizeLinear" for node in graph.node)
    # Same interface: same input, same outputs, close logits on the same batch.
    batch = np.random.default_rng(0).random((2, *bundled_input_shape(bundled)), np.float32)
    fp32 = OnnxEngine(bundled, timeout_s=None).run(batch)
    int8 = OnnxEngine(package, timeout_s=None).run(batch)
    assert int8.logits.shape == fp32.logits.shape
    assert int8.cam.shape == fp32.cam.shape


def test_a_variant_that_loses_accuracy_is_refused_and_not_written(
    bundled: ModelPackage,
    data: tuple[Path, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No variant can drop AUROC by less than -1: the check must refuse, naming each finding.
    monkeypatch.setattr(precision, "AUROC_DROP_LIMIT", -1.0)
    train, test = data
    out = tmp_path / "int8"
    with pytest.raises(ModelPackageError) as refused:
        reduced_precision_package(bundled, out, train_root=train, test_root=test)
    for code in bundled.finding_codes:
        assert f"{code}: AUROC" in str(refused.value)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # no staging folder left either


def bundled_input_shape(package: ModelPackage) -> tuple[int, int, int]:
    tensor = package.manifest.input
    return tensor.channels, tensor.height, tensor.width


def test_export_command_offers_int8_and_refuses_other_precisions(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from diagnostics.cli import build_parser, main

    args = build_parser().parse_args(["export", "training/cxr-demo.toml", "--precision", "int8"])
    assert args.precision == "int8"
    with pytest.raises(SystemExit) as exited:
        main(["export", "training/cxr-demo.toml", "--precision", "bf16"])
    assert exited.value.code == 2
    assert "invalid choice: 'bf16'" in capsys.readouterr().err


def test_the_first_convolution_reads_the_image_in_fp32_and_the_rest_are_quantized(
    bundled: ModelPackage, data: tuple[Path, Path], tmp_path: Path
) -> None:
    """Quantizing the first layer's input would round the image to 256 grey levels."""
    train, _ = data
    examples = load_dataset("synth", train, bundled.finding_codes, split="train")[:4]
    out = tmp_path / "int8.onnx"
    precision.quantize_int8(bundled, examples, out)
    graph = onnx.load(str(out)).graph
    producers = {output: node.op_type for node in graph.node for output in node.output}
    convolutions = [node for node in graph.node if node.op_type == "Conv"]
    inputs = {i.name for i in graph.input}
    first, rest = convolutions[0], convolutions[1:]
    assert first.input[0] in inputs, "the first convolution should read the image unquantized"
    assert producers.get(first.input[1]) != "DequantizeLinear"  # its weights stay fp32 too
    assert rest and all(producers.get(c.input[0]) == "DequantizeLinear" for c in rest)
