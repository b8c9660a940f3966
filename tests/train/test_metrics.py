"""Metrics against brute-force definitions: pair counting, threshold sweeps, hand-made tables."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from matplotlib.figure import Figure

from diagnostics.errors import ConfigurationError, DatasetError
from diagnostics.train import metrics, plots
from diagnostics.train.metrics import (
    auroc,
    bootstrap_auroc_ci,
    evaluate,
    expected_calibration_error,
    nodule_size_group,
    reliability_bins,
    roc_curve,
    sensitivity_at_specificity,
    sensitivity_by_group,
)

CODES = ["nodule", "consolidation", "cardiomegaly"]


def _tied_data(seed: int, n: int = 300, prevalence: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    """Informative scores rounded to one decimal, so ties within and across classes abound."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < prevalence).astype(int)
    scores = np.round(np.clip(rng.normal(0.4 + 0.2 * y, 0.2), 0.0, 1.0), 1)
    return y, scores


def _pair_count_auroc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1][:, None], s[y == 0][None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


@pytest.mark.parametrize("seed", range(5))
def test_auroc_equals_mann_whitney_pair_counting_with_ties(seed: int) -> None:
    y, s = _tied_data(seed)
    assert auroc(y, s) == pytest.approx(_pair_count_auroc(y, s), abs=1e-12)


def test_auroc_by_hand_and_at_the_extremes() -> None:
    # pairs (pos, neg): (0.35,0.1)>, (0.35,0.4)<, (0.8,0.1)>, (0.8,0.4)> -> 3/4
    assert auroc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
    assert auroc([0, 1], [0.2, 0.2]) == 0.5
    assert auroc([0, 0, 1], [0.1, 0.2, 0.9]) == 1.0
    assert auroc([1, 1, 0], [0.1, 0.2, 0.9]) == 0.0


def test_roc_curve_matches_a_threshold_sweep_and_its_area_is_the_auroc() -> None:
    y, s = _tied_data(7)
    fpr, tpr, thresholds = roc_curve(y, s)
    assert (fpr[0], tpr[0], thresholds[0]) == (0.0, 0.0, np.inf)
    assert (fpr[-1], tpr[-1]) == (1.0, 1.0)
    assert np.all(np.diff(thresholds) < 0)
    np.testing.assert_array_equal(thresholds[1:], np.unique(s)[::-1])
    for f, t, threshold in zip(fpr, tpr, thresholds, strict=True):
        flagged = s >= threshold
        assert t == flagged[y == 1].mean()
        assert f == flagged[y == 0].mean()
    assert np.trapezoid(tpr, fpr) == pytest.approx(auroc(y, s), abs=1e-12)


@pytest.mark.parametrize(
    "call",
    [
        lambda y, s: roc_curve(y, s),
        lambda y, s: auroc(y, s),
        lambda y, s: bootstrap_auroc_ci(y, s, n_boot=10),
        lambda y, s: sensitivity_at_specificity(y, s, 0.9),
    ],
)
@pytest.mark.parametrize("labels", [[1, 1, 1], [0, 0, 0]])
def test_single_class_input_is_a_dataset_error(call: object, labels: list[int]) -> None:
    with pytest.raises(DatasetError, match="both positive and negative"):
        call(labels, [0.1, 0.5, 0.9])  # type: ignore[operator]


def test_bad_labels_and_scores_are_refused() -> None:
    with pytest.raises(DatasetError, match="0 or 1"):
        auroc([0, 1, 2], [0.1, 0.2, 0.3])
    with pytest.raises(DatasetError, match="0 or 1"):
        auroc([0, 1, np.nan], [0.1, 0.2, 0.3])
    with pytest.raises(DatasetError, match="NaN"):
        auroc([0, 1, 1], [0.1, np.nan, 0.3])
    with pytest.raises(ValueError, match="shape"):
        auroc([0, 1, 1], [0.1, 0.3])


def test_vectorised_bootstrap_equals_resampling_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    _, s = _tied_data(3, n=30)
    y = np.zeros(30, dtype=bool)
    y[[4, 17]] = True  # (28/30)**30: about one resample in eight holds no positive
    vectorised = metrics._bootstrap_aurocs(y, s, 200, np.random.default_rng(5))
    draws = np.random.default_rng(5).integers(0, y.size, size=(200, y.size))
    one_by_one = []
    for value, draw in zip(vectorised, draws, strict=True):
        if y[draw].all() or not y[draw].any():
            assert np.isnan(value)
        else:
            one_by_one.append(_pair_count_auroc(y[draw], s[draw]))
            assert value == pytest.approx(one_by_one[-1], abs=1e-12)
    assert 0 < len(one_by_one) < 200  # some resamples missed every positive
    expected = np.quantile(one_by_one, [0.05, 0.95])
    assert bootstrap_auroc_ci(y, s, n_boot=200, seed=5, alpha=0.1) == pytest.approx(expected)
    monkeypatch.setattr(metrics, "_MAX_BOOT_CELLS", 7 * y.size)  # chunks of 7 resamples
    chunked = metrics._bootstrap_aurocs(y, s, 200, np.random.default_rng(5))
    np.testing.assert_array_equal(chunked, vectorised)


def test_bootstrap_ci_contains_the_estimate_narrows_with_data_and_is_reproducible() -> None:
    small_y, small_s = _tied_data(11, n=100)
    large_y, large_s = _tied_data(11, n=3000)
    small = bootstrap_auroc_ci(small_y, small_s, n_boot=500, seed=1)
    large = bootstrap_auroc_ci(large_y, large_s, n_boot=500, seed=1)
    for (low, high), (y, s) in ((small, (small_y, small_s)), (large, (large_y, large_s))):
        assert low < auroc(y, s) < high
    assert (large[1] - large[0]) < 0.5 * (small[1] - small[0])
    assert bootstrap_auroc_ci(small_y, small_s, n_boot=500, seed=1) == small
    assert bootstrap_auroc_ci(small_y, small_s, n_boot=500, seed=2) != small


def test_bootstrap_skips_single_class_resamples_and_fails_only_when_all_are() -> None:
    y = np.zeros(40, dtype=int)
    y[0] = 1  # about 36 % of resamples miss the only positive
    low, high = bootstrap_auroc_ci(y, np.linspace(0.0, 1.0, 40), n_boot=200)
    assert 0.0 <= low <= high <= 1.0
    failures = 0
    for seed in range(50):  # two cases, one resample: single-class half the time
        try:
            bootstrap_auroc_ci([0, 1], [0.2, 0.8], n_boot=1, seed=seed)
        except DatasetError as error:
            assert "one class only" in str(error)
            failures += 1
    assert 0 < failures < 50


def _brute_sensitivity_at_specificity(
    y: np.ndarray, s: np.ndarray, target: float
) -> tuple[float, float]:
    best = (-1.0, np.nan)
    for threshold in sorted({*s.tolist(), np.inf}, reverse=True):
        flagged = s >= threshold
        if (~flagged[y == 0]).mean() >= target and flagged[y == 1].mean() > best[0]:
            best = (flagged[y == 1].mean(), threshold)
    return best


@pytest.mark.parametrize("target", [0.0, 0.5, 0.9, 0.95, 0.99, 1.0])
def test_sensitivity_at_specificity_matches_a_threshold_sweep(target: float) -> None:
    for seed in range(3):
        y, s = _tied_data(seed)
        assert sensitivity_at_specificity(y, s, target) == _brute_sensitivity_at_specificity(
            y, s, target
        )


def test_sensitivity_at_specificity_by_hand() -> None:
    y = [0] * 10 + [1] * 4
    s = [0.1] * 9 + [0.5] + [0.05, 0.5, 0.6, 0.95]
    # threshold 0.5 flags one negative of ten: specificity exactly 0.9 meets a 0.9 target.
    assert sensitivity_at_specificity(y, s, 0.9) == (0.75, 0.5)
    # 0.95 needs every negative unflagged: only thresholds above 0.5; 0.6 is the most sensitive.
    assert sensitivity_at_specificity(y, s, 0.95) == (0.5, 0.6)
    assert sensitivity_at_specificity([0, 1], [0.9, 0.1], 1.0) == (0.0, np.inf)


def test_reliability_bins_by_hand() -> None:
    y = [0, 1, 0, 1, 1]
    p = [0.05, 0.15, 0.55, 0.55, 1.0]
    table = reliability_bins(y, p, bins=10)
    assert [(b.low, b.high, b.n_cases) for b in table] == [
        (0.0, 0.1, 1),
        (0.1, 0.2, 1),
        (0.5, 0.6, 2),
        (0.9, 1.0, 1),  # 1.0 joins the last bin; empty bins are left out
    ]
    assert [b.mean_prob for b in table] == pytest.approx([0.05, 0.15, 0.55, 1.0])
    assert [b.frac_pos for b in table] == [0.0, 1.0, 0.5, 1.0]
    gaps = [0.05, 0.85, 0.05, 0.0]
    expected = (1 * gaps[0] + 1 * gaps[1] + 2 * gaps[2] + 1 * gaps[3]) / 5
    assert expected_calibration_error(y, p, bins=10) == pytest.approx(expected)


def test_ece_is_small_when_calibrated_and_large_when_not() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(100_000)
    y = (rng.random(p.size) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.01
    overconfident = np.where(p > 0.5, 1.0 - (1.0 - p) ** 3, p**3)
    assert expected_calibration_error(y, overconfident) > 0.1


def test_probabilities_outside_the_unit_interval_are_refused() -> None:
    with pytest.raises(DatasetError, match="logits"):
        expected_calibration_error([0, 1], [-2.0, 3.0])


def test_sensitivity_by_group_counts_positives_only() -> None:
    y = [1, 1, 1, 1, 0, 0]
    flagged = [True, False, True, True, True, False]
    groups = ["<=10mm", "<=10mm", ">10mm", ">10mm", None, "<=10mm"]
    assert sensitivity_by_group(y, flagged, groups) == {"<=10mm": (0.5, 2), ">10mm": (1.0, 2)}
    with pytest.raises(DatasetError, match="group"):
        sensitivity_by_group([1, 0], [True, False], [None, "<=10mm"])


def test_nodule_size_groups_put_ten_millimetres_in_the_early_stage() -> None:
    assert [nodule_size_group(d) for d in (3.0, 10.0, 10.1)] == ["<=10mm", "<=10mm", ">10mm"]


def _multilabel(n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(42)
    labels = (rng.random((n, 3)) < [0.2, 0.3, 0.4]).astype(int)
    probs = np.clip(rng.normal(0.3 + 0.3 * labels, 0.15), 0.0, 1.0)
    return labels, probs


def test_evaluate_agrees_with_the_single_metrics_and_is_json_ready() -> None:
    labels, probs = _multilabel()
    thresholds = {"nodule": 0.5, "consolidation": 0.45, "cardiomegaly": 0.6}
    report = evaluate(labels, probs, CODES, thresholds, n_boot=200)
    assert list(report) == CODES
    json.dumps(report, allow_nan=False)
    for k, code in enumerate(CODES):
        y, p, entry = labels[:, k], probs[:, k], report[code]
        assert entry["auroc"] == auroc(y, p)
        assert entry["auroc_ci_95"] == list(bootstrap_auroc_ci(y, p, n_boot=200))
        assert (entry["sensitivity_at_90_specificity"], entry["threshold_at_90_specificity"]) == (
            sensitivity_at_specificity(y, p, 0.90)
        )
        assert entry["ece"] == expected_calibration_error(y, p)
        assert (entry["n_positive"], entry["n_negative"]) == (y.sum(), (1 - y).sum())
        flagged = p >= thresholds[code]
        assert entry["sensitivity"] == flagged[y == 1].mean()
        assert entry["specificity"] == (~flagged[y == 0]).mean()
    assert "sensitivity" not in evaluate(labels, probs, CODES, n_boot=10)["nodule"]


def test_evaluate_names_the_finding_and_the_missing_threshold() -> None:
    labels, probs = _multilabel()
    labels[:, 1] = 0
    with pytest.raises(DatasetError, match="'consolidation'"):
        evaluate(labels, probs, CODES, n_boot=10)
    with pytest.raises(ConfigurationError, match="cardiomegaly"):
        evaluate(labels, probs, CODES, {"nodule": 0.5, "consolidation": 0.5}, n_boot=10)
    with pytest.raises(ValueError, match="codes"):
        evaluate(labels, probs, CODES[:2], n_boot=10)


def test_plots_write_pngs_and_return_figures(tmp_path: Path) -> None:
    labels, probs = _multilabel()
    curves = metrics.as_curves(labels, probs, CODES)
    bins = {code: reliability_bins(labels[:, k], probs[:, k]) for k, code in enumerate(CODES)}
    assert isinstance(plots.roc_figure(curves), Figure)
    assert isinstance(plots.reliability_figure(bins), Figure)
    for path in (
        plots.plot_roc(curves, tmp_path / "roc.png"),
        plots.plot_reliability(bins, tmp_path / "sub" / "rel.png"),
    ):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_importing_the_plots_does_not_touch_pyplot() -> None:
    code = "import sys, diagnostics.train.plots; assert 'matplotlib.pyplot' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
