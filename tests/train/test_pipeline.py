"""Recipe to model package end to end, on a tiny synthetic dataset: the researcher's path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from diagnostics.dicom import read_instance
from diagnostics.nets import LSE_SHARPNESS
from diagnostics.package import load_package
from diagnostics.preprocess import preprocess_image
from diagnostics.train.pipeline import SYNTHETIC_NOTE, TrainingRun, run_recipe
from diagnostics.train.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[2]

TINY_RECIPE = """
name = "tiny-cxr"
version = "0.0.1"
model = "compact"
findings = ["nodule", "consolidation", "cardiomegaly"]
seed = 3
package = "package"

[data]
train = "train"
test = "test"
validation_fraction = 0.3

[data.synth]
train_studies = 90
train_seed = 31
test_studies = 40
test_seed = 32
rows = 96
columns = 96
spacing_mm = 4.2

[preprocessing]
size = [64, 64]

[training]
epochs = 2
batch_size = 16
"""


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainingRun]:
    base = tmp_path_factory.mktemp("tiny")
    (base / "tiny.toml").write_text(TINY_RECIPE)
    recipe = load_recipe(base / "tiny.toml", base=base)
    return base, run_recipe(recipe, base / "work", allow_weak=True)  # 2 epochs: weak


@pytest.mark.slow
def test_package_is_written_verified_and_described(tiny_run: tuple[Path, TrainingRun]) -> None:
    base, run = tiny_run
    package = load_package(base / "package")
    manifest = package.manifest
    assert list(package.finding_codes) == ["nodule", "consolidation", "cardiomegaly"]
    assert manifest.architecture == "compact"
    assert manifest.preprocessing.size == (64, 64)
    assert SYNTHETIC_NOTE in manifest.limitations
    assert manifest.training.test is not None and manifest.training.test.studies == 40
    assert manifest.training.train.studies + manifest.training.validation.studies == 90
    for code in package.finding_codes:
        point = manifest.operating_points[code]
        assert 0.0 <= point.threshold <= 1.0 and point.sensitivity >= 0.9
        assert manifest.metrics["test"][code]["auroc"] is not None
    by_size = manifest.metrics["test"]["nodule"]["nodule_sensitivity_by_size"]
    assert set(by_size) <= {"<=10mm", ">10mm"} and by_size
    assert manifest.metrics["onnx_parity"]["probability"] <= 1e-4
    reference = manifest.reference_distributions  # drift monitoring's, from validation
    assert reference is not None and reference.studies == manifest.training.validation.studies
    assert all(sum(c) == reference.studies for c in reference.findings.values())
    assert reference.appearance is not None and sum(reference.appearance) == reference.studies
    card = (base / "package" / "MODEL_CARD.md").read_text()
    assert "synthetic" in card.lower() and "not a clinical device" in card
    for name in ("roc_test.png", "reliability_test.png", "roc_val.png"):
        assert (run.report_dir / name).stat().st_size > 1000


@pytest.mark.slow
def test_packaged_onnx_reproduces_the_reported_probabilities(
    tiny_run: tuple[Path, TrainingRun],
) -> None:
    """Serving's path (read DICOM, preprocess from the manifest, ONNX) gives usable outputs."""
    base, _ = tiny_run
    package = load_package(base / "package")
    files = sorted((base / "test").glob("study-*/IM-0001.dcm"))[:4]
    batch = np.stack(
        [preprocess_image(read_instance(f), package.manifest.preprocessing).numpy() for f in files]
    )
    session = ort.InferenceSession(str(package.onnx_path), providers=["CPUExecutionProvider"])
    logits, cam = session.run(["logits", "cam"], {"image": batch})
    assert logits.shape == (4, 3) and cam.shape[:2] == (4, 3)
    pooled = np.log(np.exp(LSE_SHARPNESS * cam.astype(np.float64)).mean(axis=(2, 3)))
    np.testing.assert_allclose(pooled / LSE_SHARPNESS, logits, atol=1e-4)
    probs = [
        package.manifest.calibration[c].probability(logits[:, k])
        for k, c in enumerate(package.finding_codes)
    ]
    assert all(((p >= 0) & (p <= 1)).all() for p in probs)


@pytest.mark.slow
def test_cli_export_rewrites_the_package_from_the_checkpoint(
    tiny_run: tuple[Path, TrainingRun],
) -> None:
    base, _ = tiny_run
    before = load_package(base / "package").manifest
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "diagnostics.cli",
            "export",
            "tiny.toml",
            "--work",
            "work",
            "--quiet",
            "--allow-weak",
        ],
        cwd=base,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    after = load_package(base / "package").manifest
    assert report["sha256"] == after.sha256
    assert after.metrics["test"] == before.metrics["test"]  # same weights, same answers


@pytest.mark.slow
def test_cli_train_refuses_a_bad_recipe_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "bad.toml").write_text(TINY_RECIPE.replace('model = "compact"', 'model = "vgg"'))
    result = subprocess.run(
        [sys.executable, "-m", "diagnostics.cli", "train", "bad.toml"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        result.stderr.strip()
    ] and result.stderr.startswith("error: ConfigurationError: bad.toml: model: ")
    assert "compact" in result.stderr  # lists what is available


@pytest.mark.slow
def test_cli_export_without_a_training_run_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "tiny.toml").write_text(TINY_RECIPE)
    result = subprocess.run(
        [sys.executable, "-m", "diagnostics.cli", "export", "tiny.toml", "--work", "nowhere"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2 and "diagnostics train" in result.stderr
    assert ROOT.exists()
