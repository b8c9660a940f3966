"""The model card: generated from the manifest, complete, honest about synthetic training data."""

from __future__ import annotations

from typing import Any

import pytest

from diagnostics.package import Manifest
from diagnostics.package.card import SYNTHETIC_WARNING, render
from tests.test_package import CODES, example_fields


def _manifest(**changes: Any) -> Manifest:
    fields = example_fields() | {
        "schema_version": 1,
        "sha256": "ab" * 32,
        "created": "2025-06-01T12:00:00+00:00",
        "library_versions": {"onnx": "1.23.2", "torch": "2.14.1"},
    }
    return Manifest.model_validate(fields | changes)


@pytest.fixture(scope="module")
def card() -> str:
    return render(_manifest())


def test_card_identifies_the_model(card: str) -> None:
    assert card.startswith("# Model card: cxr-demo 1.0.0\n")
    assert f"`{'ab' * 32}`" in card
    assert "| torch | 2.14.1 |" in card


def test_card_states_synthetic_training_prominently(card: str) -> None:
    assert SYNTHETIC_WARNING == (
        "trained on synthetic phantoms; a demonstration, not a clinical device"
    )
    assert card.index(SYNTHETIC_WARNING) < card.index("## Intended use")


def test_card_without_synthetic_data_has_no_warning() -> None:
    training = example_fields()["training"]
    for split in training.values():
        split["description"] = "Hospital A, 2019-2021, consecutive adult chest radiographs"
    assert SYNTHETIC_WARNING not in render(_manifest(training=training))


def test_card_lists_every_finding_with_its_code(card: str) -> None:
    for code in CODES:
        assert f"| `{code}` |" in card
    assert 'SCT 8186001 "Cardiomegaly"' in card
    assert "platt (a=0.8, b=-0.3), fitted on synth-val seed 2" in card


def test_card_shows_the_metrics(card: str) -> None:
    row = next(line for line in card.splitlines() if line.startswith("| `nodule` | 0.910"))
    # Sensitivity and specificity measured on the reported set (none in this manifest), then
    # what the threshold was chosen for and what it gave there.
    assert "0.910 (0.880-0.940) | 0.720 | 0.610 | 0.031 | 0.400 | n/a / n/a |" in row
    assert "| sens. 0.90 on synth-val seed 2 (there 0.910 / 0.800) |" in row
    fields = example_fields()
    fields["metrics"]["nodule"].update(sensitivity=0.88, specificity=0.92)
    measured = render(_manifest(metrics=fields["metrics"]))
    assert "| 0.400 | 0.880 / 0.920 | sens. 0.90" in measured
    fields["metrics"]["nodule"]["threshold"] = 0.35  # measured at another cut: said so
    assert "| 0.400 | 0.880 / 0.920 (at 0.350) |" in render(_manifest(metrics=fields["metrics"]))
    sizes = ["| <6 mm | 0.410 |", "| 6-10 mm | 0.700 |", "| >10 mm | 0.930 |"]
    assert sizes[0] + "\n" + sizes[1] + "\n" + sizes[2] in card
    assert "- overall.macro_auroc: 0.950" in card
    assert "- cardiomegaly.n_test_positives: 102" in card


def test_card_shows_scope_preprocessing_data_and_limits(card: str) -> None:
    assert "- Modalities: DX, CR" in card
    assert "float32 [N, 1, 32, 32]" in card
    assert "| train | Synthetic chest phantoms (diagnostics synth) | 2000 | 2000 |" in card
    assert "- Never validated on real patients." in card


def test_card_reads_free_form_metrics_defensively() -> None:
    metrics = {
        "nodule": "not computed",
        "consolidation": {"auroc": None, "auroc_ci_95": "bootstrap failed"},
        "cardiomegaly": {"nodule_sensitivity_by_size": [0.1, 0.2]},
        "overall": [{"size": "3-6 mm"}],
    }
    card = render(_manifest(metrics=metrics))
    assert "| `nodule` | n/a | n/a | n/a | n/a | 0.400 |" in card
    assert "n/a (CI bootstrap failed)" in card
    assert "- nodule: not computed" in card
    assert "[0.1, 0.2]" in card
    assert '- overall: [{"size": "3-6 mm"}]' in card


def test_card_keeps_size_bins_in_order_and_reads_records() -> None:
    fields = example_fields()
    nodule = fields["metrics"]["nodule"]
    nodule["nodule_sensitivity_by_size"] = {">=10 mm": 0.9, "3-6 mm": 0.4, "6-10 mm": 0.6}
    card = render(_manifest(metrics=fields["metrics"]))
    assert card.index("| 3-6 mm |") < card.index("| 6-10 mm |") < card.index("| >=10 mm |")
    nodule["nodule_sensitivity_by_size"] = {
        ">10mm": {"n_positive": 20, "sensitivity": 0.95},
        "<=10mm": {"n_positive": 12, "sensitivity": 0.75},
    }
    card = render(_manifest(metrics=fields["metrics"]))
    assert "| Size | n_positive | sensitivity |" in card
    assert card.index("| <=10mm | 12 | 0.750 |") < card.index("| >10mm | 20 | 0.950 |")
    nodule["nodule_sensitivity_by_size"] = [{"size": "<6 mm", "sensitivity": 0.4, "n": 20}]
    card = render(_manifest(metrics=fields["metrics"]))
    assert "| size | sensitivity | n |" in card
    assert "| <6 mm | 0.400 | 20 |" in card


def test_card_escapes_table_syntax_and_handles_no_test_set() -> None:
    fields = example_fields()
    fields["findings"][0]["display"] = "Nodule | mass"
    fields["training"]["test"] = None
    card = render(_manifest(findings=fields["findings"], training=fields["training"]))
    assert "Nodule \\| mass" in card
    assert "| test | none (no held-out test set) |" in card


def test_card_reads_metrics_nested_by_split_as_the_pipeline_writes_them() -> None:
    """The training pipeline stores per-finding metrics under "test" and "validation"."""
    flat = _manifest().metrics
    per_finding = {code: flat[code] for code in CODES if code in flat}
    nested = {"test": per_finding, "validation": {"nodule": {"auroc": 0.5}}}
    card = render(_manifest(metrics=nested))
    assert "## Performance (test set)" in card
    assert any(line.startswith("| `nodule` | 0.910 (0.880-0.940)") for line in card.splitlines())
    assert "- validation.nodule.auroc: 0.500" in card  # the other split is listed, not dropped
