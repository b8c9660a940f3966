"""Comparing model packages: the paired bootstrap, the verdict rule, and real packages.

What the package-level tests show, honestly: the bundled model against itself is "not different"
with a zero-width interval (trivial, but it pins the pairing: independent resamples would give a
wide interval around 0); an untrained network of the same architecture against the bundled model
is "worse", and the other way round "better". They do not show that the rule detects small
real differences; the bootstrap tests below check the arithmetic that would.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from diagnostics.cli import main
from diagnostics.cli.compare import COMPARE_LAYOUTS
from diagnostics.compare import (
    RULE,
    FindingComparison,
    ModelResult,
    compare_logits,
    compare_on_dataset,
    compare_packages,
    overall_verdict,
    paired_bootstrap,
    shared_codes,
    verdict_for,
)
from diagnostics.datasets import LAYOUTS, load_dataset
from diagnostics.datasets.labelled import iter_label_rows
from diagnostics.dicom import read_instance
from diagnostics.errors import ConfigurationError, DatasetError
from diagnostics.nets import build_model
from diagnostics.package import ModelPackage, write_package
from diagnostics.preprocess import preprocess_image
from diagnostics.synth import SynthConfig, generate
from diagnostics.train.metrics import auroc
from diagnostics.train.onnx_export import export_checked
from tests.datasets.fixtures import write_image, write_nih
from tests.helpers.synth import BUNDLED

SEED = 4344
"""Never used for the bundled model's data (101, 202)."""
CODES = ["nodule", "consolidation", "cardiomegaly"]


# ---- the rule -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("low", "high", "verdict"),
    [
        (0.01, 0.2, "better"),
        (-0.2, -0.01, "worse"),
        (-0.1, 0.1, "not different"),
        (0.0, 0.1, "not different"),
        (-0.1, 0.0, "not different"),
        (0.0, 0.0, "not different"),
    ],
)
def test_finding_verdict_from_the_interval(low: float, high: float, verdict: str) -> None:
    assert verdict_for(low, high) == verdict


def test_overall_verdict_one_worse_finding_decides() -> None:
    assert overall_verdict(["better", "worse", "better"]) == "worse"
    assert overall_verdict(["better", "not different"]) == "better"
    assert overall_verdict(["not different", "not different"]) == "not different"
    assert "entirely above 0" in RULE and "any finding is worse" in RULE


def test_results_are_valid_once_built() -> None:
    side = ModelResult(0.8, (0.7, 0.9), 0.5, 0.9, 0.6, 0.05)
    with pytest.raises(ValueError, match="does not follow the rule"):
        FindingComparison("nodule", 5, 5, 0, side, side, 0.0, (-0.3, -0.1), 100, "better")
    with pytest.raises(ValueError, match="auroc must be in"):
        ModelResult(1.2, (0.7, 0.9), 0.5, 0.9, 0.6, 0.05)


# ---- the paired bootstrap ------------------------------------------------------------------


def test_paired_bootstrap_matches_a_brute_force_loop() -> None:
    rng = np.random.default_rng(1)
    labels = rng.random(30) < 0.4
    a = labels + rng.normal(0, 0.8, 30)
    b = np.round(labels + rng.normal(0, 1.0, 30), 1)  # ties, to exercise the half-counting
    result = paired_bootstrap(labels, a, b, n_boot=200, seed=7)
    draws = np.random.default_rng(7).integers(0, 30, size=(200, 30))
    diffs, first, second = [], [], []
    for row in draws:
        if labels[row].all() or not labels[row].any():
            continue
        first.append(auroc(labels[row], a[row]))
        second.append(auroc(labels[row], b[row]))
        diffs.append(first[-1] - second[-1])
    assert result.resamples == len(diffs)
    np.testing.assert_allclose(result.difference_ci, np.quantile(diffs, [0.025, 0.975]))
    np.testing.assert_allclose(result.candidate_ci, np.quantile(first, [0.025, 0.975]))
    np.testing.assert_allclose(result.current_ci, np.quantile(second, [0.025, 0.975]))


def test_pairing_makes_the_difference_interval_narrow() -> None:
    """Two nearly identical models: each AUROC is uncertain, their difference is not."""
    rng = np.random.default_rng(2)
    labels = rng.random(200) < 0.3
    a = labels + rng.normal(0, 1.0, 200)
    b = a + rng.normal(0, 0.05, 200)
    result = paired_bootstrap(labels, a, b, n_boot=500, seed=0)
    width = np.diff(result.difference_ci)[0]
    assert width < 0.25 * np.diff(result.candidate_ci)[0]
    same = paired_bootstrap(labels, a, a, n_boot=100)
    assert same.difference_ci == (0.0, 0.0)


def test_bootstrap_refuses_unusable_labels() -> None:
    with pytest.raises(DatasetError, match="positive and negative"):
        paired_bootstrap([1, 1, 1], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])
    with pytest.raises(DatasetError, match="0/1"):
        paired_bootstrap([1, -1, 0], [0.1, 0.2, 0.3], [0.3, 0.2, 0.1])


# ---- real packages ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def labelled_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 synthetic studies over the bundled model's field of view, at a quarter of the size."""
    out = tmp_path_factory.mktemp("compare-synth")
    generate(out, 40, SEED, SynthConfig(rows=96, columns=96, spacing_mm=409.6 / 96))
    return out


@pytest.fixture(scope="module")
def untrained(
    bundled: ModelPackage, labelled_folder: Path, tmp_path_factory: pytest.TempPathFactory
) -> ModelPackage:
    """The bundled architecture with random weights: a deliberately worse package.

    Its calibration and operating points are the bundled model's, copied, so only the network
    differs; it reads 64 x 64 inputs to keep the test fast.
    """
    torch.manual_seed(0)
    model = build_model("compact", 1, len(bundled.finding_codes))
    spec = bundled.manifest.preprocessing.model_copy(update={"size": (64, 64)})
    files = [
        labelled_folder / row["file"]
        for row in list(iter_label_rows(labelled_folder / "labels.csv"))[:4]
    ]
    inputs = torch.stack([preprocess_image(read_instance(f), spec) for f in files])
    out = tmp_path_factory.mktemp("untrained")
    export_checked(model, inputs, out / "model.onnx")
    fields = bundled.manifest.model_dump(mode="json")
    fields.update(
        name="untrained",
        version="0.0.1",
        preprocessing=spec.model_dump(mode="json"),
        input={"name": "image", "channels": 1, "height": 64, "width": 64},
        metrics={},
        appearance=None,
    )
    return write_package(out / "package", out / "model.onnx", fields)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("preprocessed")


def test_bundled_against_itself_is_not_different(
    bundled: ModelPackage, labelled_folder: Path, cache: Path
) -> None:
    examples = load_dataset("synth", labelled_folder, CODES)
    result = compare_packages(bundled, bundled, examples, CODES, n_boot=300, cache_dir=cache)
    assert result.verdict == "not different" and result.identical_models
    for finding in result.findings:
        assert finding.difference_ci_95 == (0.0, 0.0) and finding.verdict == "not different"
        assert finding.candidate == finding.current
        assert finding.n_positive + finding.n_negative == 40
    assert [f.code for f in result.findings] == CODES


def test_untrained_network_is_worse_and_the_bundled_one_better(
    bundled: ModelPackage, untrained: ModelPackage, labelled_folder: Path, cache: Path
) -> None:
    examples = load_dataset("synth", labelled_folder, CODES)
    worse = compare_packages(untrained, bundled, examples, CODES, n_boot=500, cache_dir=cache)
    assert worse.verdict == "worse" and not worse.identical_models
    assert any(f.difference_ci_95[1] < 0 for f in worse.findings)
    better = compare_packages(bundled, untrained, examples, CODES, n_boot=500, cache_dir=cache)
    assert better.verdict == "better"
    lines = better.summary_lines()
    assert lines[-2] == "overall: BETTER" and lines[-1] == f"rule: {RULE}"


def test_findings_only_one_package_reports_are_listed_as_skipped(bundled: ModelPackage) -> None:
    codes, skipped = shared_codes(bundled, bundled, ["cardiomegaly", "pneumonia"])
    assert codes == ("cardiomegaly",)
    assert skipped == {
        "nodule": "the data do not label it",
        "consolidation": "the data do not label it",
    }


def test_a_finding_with_one_class_is_skipped_not_fatal(bundled: ModelPackage) -> None:
    labels = np.array([[1, 0], [0, 0], [1, 0], [-1, 0]])
    logits = {"nodule": np.array([2.0, -1.0, 1.0, 0.0]), "consolidation": np.zeros(4)}
    findings, skipped = compare_logits(
        bundled, bundled, labels, ["nodule", "consolidation"], logits, logits, n_boot=50
    )
    assert [f.code for f in findings] == ["nodule"] and findings[0].n_unknown == 1
    assert skipped == {"consolidation": "the data hold 0 positive and 4 negative studies"}


def test_no_shared_finding_is_a_configuration_error(bundled: ModelPackage, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="share no finding"):
        compare_on_dataset(bundled, bundled, tmp_path, layout="covid")


def nih_from_synth(labelled_folder: Path, out: Path) -> Path:
    """The synthetic studies as an NIH-style folder of 8-bit PNGs (brighter = denser)."""
    entries, names = [], {}
    for n, row in enumerate(iter_label_rows(labelled_folder / "labels.csv")):
        pixels = read_instance(labelled_folder / row["file"]).pixels[0]
        low, high = np.percentile(pixels, [0.5, 99.5])
        scaled = np.clip((pixels - low) / (high - low) * 255, 0, 255).astype(np.uint8)
        name = f"{n:08d}_000.png"
        labels = [
            label
            for label, code in (
                ("Nodule", "nodule"),
                ("Consolidation", "consolidation"),
                ("Cardiomegaly", "cardiomegaly"),
            )
            if row[code] == "1"
        ]
        entries.append((name, "|".join(labels) or "No Finding", row["patient_id"], row["view"]))
        names[name] = scaled
    write_nih(out, entries, images=False, test=list(names))
    for name, scaled in names.items():
        write_image(out / "images" / name, scaled)
    return out


def test_cli_compares_on_an_nih_png_layout(
    bundled: ModelPackage,
    labelled_folder: Path,
    cache: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = nih_from_synth(labelled_folder, tmp_path / "nih")
    report = tmp_path / "compare.json"
    code = main(
        [
            "compare",
            str(BUNDLED),
            str(BUNDLED),
            "--data",
            str(root),
            "--layout",
            "nih",
            "--json",
            str(report),
            "--boot",
            "200",
            "--cache",
            str(cache),
            "--threads",
            "2",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "overall: NOT DIFFERENT" in out and "rule: Per finding" in out
    data = json.loads(report.read_text())
    assert data["verdict"] == "not different" and data["studies"] == 40
    assert [f["code"] for f in data["findings"]] == CODES
    assert data["identical_models"] is True
    assert "nih layout" in data["data"] and data["rule"] == RULE


def test_cli_bad_input_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["compare", str(BUNDLED), str(tmp_path / "absent"), "--data", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ModelPackageError: ") and err.count("\n") == 1
    code = main(
        [
            "compare",
            str(BUNDLED),
            str(BUNDLED),
            "--data",
            str(tmp_path),
            "--layout",
            "chexpert",
            "--option",
            "uncertain=maybe",
        ]
    )
    assert code == 2 and "option uncertain must be one of" in capsys.readouterr().err


def test_cli_names_every_layout_and_refuses_unknown_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert COMPARE_LAYOUTS.split(", ") == list(LAYOUTS)
    code = main(["compare", str(BUNDLED), str(BUNDLED), "--data", str(tmp_path), "--layout", "x"])
    assert code == 2 and "unknown dataset layout 'x'" in capsys.readouterr().err
