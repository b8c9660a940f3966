"""Calibration recovers the parameters synthetic data was drawn from; operating points are the
highest thresholds that meet their target, checked against a sweep of every threshold."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
from scipy.optimize import minimize

from diagnostics.errors import DatasetError, ModelPackageError
from diagnostics.train import calibration
from diagnostics.train.calibration import (
    FindingCalibration,
    OperatingPoint,
    choose_operating_point,
    fit_calibration,
    fit_calibrations,
    fit_platt,
    fit_temperature,
    sigmoid,
)
from diagnostics.train.metrics import expected_calibration_error


def _draw(true_logits: np.ndarray, seed: int) -> np.ndarray:
    """Labels drawn from a perfectly calibrated model with these logits."""
    return (np.random.default_rng(seed).random(true_logits.size) < sigmoid(true_logits)).astype(int)


def test_sigmoid_is_exact_and_silent_at_extreme_logits() -> None:
    x = np.array([-1000.0, -50.0, -1.0, 0.0, 1.0, 50.0, 1000.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = sigmoid(x)
    assert p[0] == 0.0 and p[-1] == 1.0 and p[3] == 0.5
    np.testing.assert_allclose(p[1:-1], 1.0 / (1.0 + np.exp(-x[1:-1])), rtol=1e-15)
    np.testing.assert_allclose(p + sigmoid(-x), 1.0, rtol=1e-15)


@pytest.mark.parametrize("true_t", [0.5, 2.5])
def test_temperature_recovers_a_known_temperature(true_t: float) -> None:
    rng = np.random.default_rng(1)
    calibrated = rng.normal(0.0, 2.0, 40_000)
    y = _draw(calibrated, seed=2)
    assert fit_temperature(calibrated * true_t, y) == pytest.approx(true_t, rel=0.05)


def test_temperature_stays_in_bounds_when_logits_point_the_wrong_way() -> None:
    logits = np.linspace(-3.0, 3.0, 200)
    y = (logits < 0).astype(int)  # anti-correlated: NLL keeps falling as T grows
    assert fit_temperature(logits, y) == pytest.approx(calibration.TEMPERATURE_BOUNDS[1], rel=1e-3)


def test_platt_recovers_known_a_and_b() -> None:
    logits = np.random.default_rng(3).normal(0.0, 3.0, 40_000)
    y = _draw(0.6 * logits - 1.2, seed=4)
    a, b = fit_platt(logits, y)
    assert a == pytest.approx(0.6, abs=0.03)
    assert b == pytest.approx(-1.2, abs=0.05)


def test_platt_newton_reaches_the_same_minimum_as_a_general_optimiser() -> None:
    logits = np.random.default_rng(5).normal(1.0, 2.0, 500)
    y = _draw(1.7 * logits + 0.4, seed=6).astype(float)

    def objective(theta: np.ndarray) -> float:
        z = theta[0] * logits + theta[1]
        nll = np.mean(np.logaddexp(0.0, z) - y * z)
        return float(nll + 0.5 * calibration.PLATT_L2 * theta @ theta)

    reference = minimize(
        objective,
        x0=[1.0, 0.0],
        method="Nelder-Mead",
        options={"xatol": 1e-10, "fatol": 1e-14, "maxiter": 10_000},
    ).x
    np.testing.assert_allclose(fit_platt(logits, y), reference, atol=1e-5)


def test_platt_stays_finite_and_silent_on_separable_data() -> None:
    logits = np.r_[np.linspace(-900.0, -1.0, 50), np.linspace(1.0, 900.0, 50)]
    y = (logits > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, b = fit_platt(logits, y)
        probs = FindingCalibration("platt", a, b).apply(logits)
    assert math.isfinite(a) and math.isfinite(b) and a > 0
    assert (probs[y == 1] > 0.5).all() and (probs[y == 0] < 0.5).all()


@pytest.mark.parametrize("method", ["temperature", "platt"])
def test_calibration_fixes_an_overconfident_model(method: calibration.Method) -> None:
    calibrated = np.random.default_rng(7).normal(-1.0, 1.5, 20_000)
    y = _draw(calibrated, seed=8)
    overconfident = 3.0 * calibrated
    fitted = fit_calibration(overconfident, y, method)
    assert expected_calibration_error(y, sigmoid(overconfident)) > 0.1
    assert expected_calibration_error(y, fitted.apply(overconfident)) < 0.02


def test_finding_calibration_maps_logits_and_round_trips() -> None:
    temperature = fit_calibration([-2.0, -1.0, 1.0, 2.0, 0.5], [0, 1, 0, 1, 1], "temperature")
    assert temperature.b == 0.0 and temperature.temperature == pytest.approx(1.0 / temperature.a)
    platt = FindingCalibration("platt", 0.5, -1.0)
    logits = np.array([[-4.0, 0.0], [2.0, 1000.0]])
    np.testing.assert_allclose(platt.apply(logits), 1.0 / (1.0 + np.exp(-(0.5 * logits - 1.0))))
    for item in (temperature, platt):
        assert FindingCalibration.from_dict(json.loads(json.dumps(item.to_dict()))) == item


@pytest.mark.parametrize(
    "data",
    [
        {"method": "isotonic", "a": 1.0, "b": 0.0},
        {"method": "temperature", "a": 1.0, "b": 0.3},
        {"method": "temperature", "a": -1.0, "b": 0.0},
        {"method": "platt", "a": "nan", "b": 0.0},
        {"method": "platt", "a": 1.0},
    ],
)
def test_malformed_calibration_entries_are_refused(data: dict[str, object]) -> None:
    with pytest.raises(ModelPackageError, match="calibration"):
        FindingCalibration.from_dict(data)


def test_calibration_needs_both_classes_and_names_the_finding() -> None:
    with pytest.raises(DatasetError, match="both positive and negative"):
        fit_temperature([0.1, 0.2], [1, 1])
    logits = np.zeros((4, 2))
    labels = np.array([[0, 1], [1, 1], [0, 1], [1, 1]])
    with pytest.raises(DatasetError, match="'consolidation'"):
        fit_calibrations(logits, labels, ["nodule", "consolidation"], "platt")


def _tied_probs(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(250) < 0.3).astype(int)
    return y, np.round(np.clip(rng.normal(0.4 + 0.25 * y, 0.2), 0.0, 1.0), 2)


@pytest.mark.parametrize("target", [0.1, 0.5, 0.8, 0.9, 0.95, 1.0])
def test_operating_point_is_the_highest_threshold_meeting_the_target(target: float) -> None:
    for seed in range(3):
        y, p = _tied_probs(seed)
        point = choose_operating_point(y, p, target)
        sweep = [t for t in np.unique(p) if (p[y == 1] >= t).mean() >= target]
        assert point.threshold == max(sweep)
        assert point.sensitivity >= target
        assert point.sensitivity == (p[y == 1] >= point.threshold).mean()
        assert point.specificity == (p[y == 0] < point.threshold).mean()
        higher = p[p > point.threshold]
        if higher.size:  # the next threshold up loses the target
            assert (p[y == 1] >= higher.min()).mean() < target


def test_operating_point_by_hand_and_round_trip() -> None:
    y = [1, 1, 1, 1, 0, 0, 0]
    p = [0.9, 0.8, 0.7, 0.2, 0.75, 0.3, 0.1]
    point = choose_operating_point(y, p, 0.75)  # 3 of 4 positives -> the third highest, 0.7
    assert point == OperatingPoint(0.7, 0.75, 2 / 3, 0.75, 4, 3)
    assert OperatingPoint.from_dict(json.loads(json.dumps(point.to_dict()))) == point
    with pytest.raises(ModelPackageError, match="operating point"):
        OperatingPoint.from_dict({**point.to_dict(), "n_positive": 2.5})
    with pytest.raises(ValueError, match="target_sensitivity"):
        choose_operating_point(y, p, 0.0)
    with pytest.raises(DatasetError):
        choose_operating_point([0, 0], [0.1, 0.2])
