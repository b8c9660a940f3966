"""Training that talks: per-epoch lines without -v, a final table, plain refusals, a scope
derived from the training data, and the same run through torchrun with two processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from diagnostics.compare import compare_on_dataset
from diagnostics.datasets import load_dataset
from diagnostics.dicom import read_info
from diagnostics.errors import ConfigurationError, WeakFindingError
from diagnostics.package import load_package
from diagnostics.screening.gate import out_of_scope_reason
from diagnostics.synth import SynthConfig, generate
from diagnostics.train.calibration import fit_calibration
from diagnostics.train.recipe import CHEST_RADIOGRAPHS
from diagnostics.train.report import refuse_or_note, scarce_findings, weak_findings
from diagnostics.train.scope import derive_scope

CODES = ["nodule", "consolidation", "cardiomegaly"]

RECIPE = """
name = "talk"
version = "0.0.1"
model = "compact"
findings = ["nodule", "consolidation", "cardiomegaly"]
seed = 3
package = "{package}"

[data]
train = "{root}/train"
test = "{root}/test"
validation_fraction = {fraction}

[preprocessing]
size = [64, 64]

[training]
epochs = 2
batch_size = 16

[calibration]
method = "platt"
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny 96 x 96 studies, generated once for every test here."""
    root = tmp_path_factory.mktemp("talk")
    config = SynthConfig(rows=96, columns=96, spacing_mm=4.2)
    generate(root / "train", 64, 41, config, workers=2)
    generate(root / "test", 24, 42, config, workers=2)
    return root


def _recipe(folder: Path, data: Path, package: str, fraction: float = 0.3) -> Path:
    path = folder / f"{package}.toml"
    path.write_text(RECIPE.format(root=data, package=package, fraction=fraction))
    return path


def _train(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diagnostics.cli", "train", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )


@pytest.fixture(scope="module")
def single(data: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    folder = data / "single"
    folder.mkdir()
    recipe = _recipe(folder, data, "package")
    return folder, _train(folder, recipe.name, "--allow-weak", "--work", "work")


@pytest.mark.slow
def test_epoch_lines_and_table_are_printed_without_verbose(
    single: tuple[Path, subprocess.CompletedProcess[str]],
) -> None:
    folder, result = single
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    for epoch in (1, 2):
        [line] = [x for x in lines if x.startswith(f"epoch {epoch}/2 ")]
        assert "train loss" in line and "val loss" in line and "best" in line
        assert all(f" {code} 0." in line or f" {code} 1." in line for code in CODES)
    assert "\r" not in result.stderr  # no bar when stderr is not a terminal
    table = lines[lines.index("results on the test set:") :]
    assert table[1].split()[:3] == ["finding", "AUROC", "95%"]
    assert [row.split()[0] for row in table[2:5]] == CODES
    assert json.loads(result.stdout)["package"].endswith("package")
    card = (folder / "package" / "MODEL_CARD.md").read_text()
    manifest = load_package(folder / "package").manifest
    weak = [note for note in manifest.limitations if "--allow-weak" in note]
    assert weak and all(note.split()[0] in card for note in weak)  # tiny data: some are weak


@pytest.mark.slow
def test_quiet_prints_nothing_but_the_summary_json(data: Path) -> None:
    folder = data / "quiet"
    folder.mkdir()
    recipe = _recipe(folder, data, "package", fraction=0.3)
    result = _train(folder, recipe.name, "--allow-weak", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "epoch" not in result.stderr and "results on" not in result.stderr
    assert json.loads(result.stdout)["evaluated_on"] == "test"


@pytest.mark.slow
def test_package_scope_comes_from_the_training_data_and_admits_its_test_images(
    single: tuple[Path, subprocess.CompletedProcess[str]], data: Path
) -> None:
    folder, result = single
    assert result.returncode == 0, result.stderr
    scope = load_package(folder / "package").manifest.scope
    assert (scope.min_rows, scope.min_columns) == (96, 96)  # not the chest default's 256
    assert scope.modalities == ["DX"] and scope.body_parts == ["CHEST"]
    for path in sorted((data / "test").glob("study-*/*.dcm")):
        assert out_of_scope_reason(read_info(path), scope) is None


def test_a_recipe_scope_narrows_the_derived_one_and_must_overlap_it(data: Path) -> None:
    examples = load_dataset("synth", data / "train", CODES, split="train")
    derived = derive_scope(examples, CHEST_RADIOGRAPHS, None)
    assert derived.views == sorted({read_info(e.path).view_position for e in examples})
    update = {"views": ["PA"], "min_rows": 128, "min_columns": 1}  # sizes can only rise
    narrow = CHEST_RADIOGRAPHS.model_copy(update=update)
    narrowed = derive_scope(examples, CHEST_RADIOGRAPHS, narrow)
    assert narrowed.views == ["PA"] and (narrowed.min_rows, narrowed.min_columns) == (128, 96)
    lateral = CHEST_RADIOGRAPHS.model_copy(update={"views": ["LL"]})
    with pytest.raises(ConfigurationError, match=r"scope.views \['LL'\] holds none"):
        derive_scope(examples, CHEST_RADIOGRAPHS, lateral)


@pytest.mark.slow
def test_too_few_positives_are_refused_before_training_naming_the_finding(data: Path) -> None:
    folder = data / "scarce"
    folder.mkdir()
    recipe = _recipe(folder, data, "package", fraction=0.1)  # about 6 validation studies
    result = _train(folder, recipe.name, "--quiet")
    assert result.returncode == 2
    assert result.stderr.startswith("Label check of ")  # the label QA report comes first
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: WeakFindingError: export refused: finding '")
    assert "too few positive studies" in message and "in validation" in message
    assert "add positive studies, or drop" in message and "--allow-weak" in message
    assert not (folder / "work" / "checkpoints").exists()  # refused before any training


def test_a_finding_at_chance_is_refused_by_name_unless_allowed() -> None:
    metrics = {
        "nodule": {"auroc": 0.55, "auroc_ci_95": [0.41, 0.69], "n_positive": 30},
        "cardiomegaly": {"auroc": 0.93, "auroc_ci_95": [0.88, 0.97], "n_positive": 30},
        "consolidation": {"auroc": 0.58, "auroc_ci_95": [0.52, 0.64], "n_positive": 400},
    }
    problems = weak_findings(metrics, list(metrics))
    assert [p.split("'")[1] for p in problems] == ["nodule", "consolidation"]
    with pytest.raises(WeakFindingError) as refused:
        refuse_or_note(problems, allow_weak=False)
    text = str(refused.value)
    assert "finding 'nodule' is no better than chance on validation (AUROC 0.550" in text
    assert "more epochs" in text and "drop 'nodule'" in text
    notes = refuse_or_note(problems, allow_weak=True)
    assert notes[0].startswith("Exported with --allow-weak although finding 'nodule'")
    labels = {"training": np.array([[1], [1], [0]]), "validation": np.array([[0], [1], [0]])}
    [scarce] = scarce_findings(labels, ["nodule"])
    assert "(2 in training, 1 in validation; at least 10" in scarce


def test_a_platt_slope_at_or_below_zero_falls_back_to_temperature() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    logits = -2.0 * y + rng.normal(0, 1, 200)  # ranked backwards: Platt's slope is negative
    calibration = fit_calibration(logits, y, "platt")
    assert calibration.method == "temperature" and calibration.a > 0 and calibration.b == 0.0
    good = fit_calibration(-logits, y, "platt")
    assert good.method == "platt" and good.a > 0


@pytest.mark.slow
def test_two_processes_through_torchrun_match_the_single_run(
    single: tuple[Path, subprocess.CompletedProcess[str]], data: Path
) -> None:
    folder, first = single
    assert first.returncode == 0, first.stderr
    recipe = _recipe(folder, data, "package2")
    result = _train(folder, recipe.name, "--allow-weak", "--work", "work2", "--nproc", "2")
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert sum(x.startswith("epoch 1/2 ") for x in lines) == 1  # rank 0 alone prints
    assert lines.count("results on the test set:") == 1
    # Two separately trained models each land somewhere in a wide interval on 24 test studies,
    # so the two runs are compared paired, on the same studies and the same resamples: the
    # interval of the AUROC difference (two processes - one) must contain 0 for every finding.
    # (On the quick recipe's data the README reports the stricter check: each AUROC of the
    # two-process run inside the single run's own interval.)
    comparison = compare_on_dataset(folder / "package2", folder / "package", data / "test", seed=1)
    assert {f.code for f in comparison.findings} | set(comparison.skipped) == set(CODES)
    for finding in comparison.findings:
        low, high = finding.difference_ci_95
        assert low <= 0.0 <= high, (finding.code, finding.auroc_difference, low, high)
    assert sorted(p.name for p in (folder / "work2" / "checkpoints").iterdir()) == [
        "best.pt",
        "last.pt",
    ]
