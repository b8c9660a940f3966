"""Per-finding probability calibration and operating points, fitted on validation data.

A CNN's sigmoid outputs are usually over-confident; radiologists read the probability, so it must
mean what it says. Both methods here reduce to one affine map of the logit,
``p = sigmoid(a * logit + b)``, so a model package stores two numbers per finding and serving
applies them the same way whichever method fitted them:

- temperature scaling (``a = 1/T``, ``b = 0``): one parameter, keeps the ranking and the 0.5 point;
  the safe default on small validation sets.
- Platt scaling (free ``a``, ``b``): also corrects a shifted prevalence, at the cost of a second
  parameter.

An operating point is the threshold at which a finding is flagged, chosen on validation data for
a target sensitivity (missing a finding costs more than a second look).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar

from diagnostics.errors import DatasetError, ModelPackageError
from diagnostics.train.metrics import _binary, _class_counts, _probabilities, _scores

FloatArray = npt.NDArray[np.float64]
Method = Literal["temperature", "platt"]

METHODS: tuple[Method, ...] = ("temperature", "platt")
TEMPERATURE_BOUNDS = (0.05, 20.0)
PLATT_L2 = 1e-4  # on the mean NLL: keeps a, b finite on separable data, negligible otherwise
_NEWTON_MAX_STEPS = 100
_NEWTON_GRADIENT_TOL = 1e-10


def sigmoid(x: npt.ArrayLike) -> FloatArray:
    """Logistic function that neither overflows nor warns, even for logits of +-1000."""
    z = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(z))  # in (0, 1]: never overflows
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _nll(z: FloatArray, y: FloatArray) -> float:
    """Mean binary cross-entropy of sigmoid(z) against y, stable for any z."""
    return float(np.mean(np.logaddexp(0.0, z) - y * z))


def _training_data(logits: npt.ArrayLike, y: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    labels = _binary(y)
    values = _scores(logits, labels.size, "logits")
    _class_counts(labels, "calibration")
    return values, labels.astype(np.float64)


def fit_temperature(logits: npt.ArrayLike, y: npt.ArrayLike) -> float:
    """Temperature T in [0.05, 20] minimising the NLL of sigmoid(logit / T).

    Searched on log T, where the NLL is far better conditioned than on T itself.
    """
    x, labels = _training_data(logits, y)
    low, high = TEMPERATURE_BOUNDS
    result = minimize_scalar(
        lambda log_t: _nll(x / math.exp(log_t), labels),
        bounds=(math.log(low), math.log(high)),
        method="bounded",
        options={"xatol": 1e-6},
    )
    return float(np.clip(math.exp(float(result.x)), low, high))


def _platt_objective(
    theta: FloatArray, x: FloatArray, y: FloatArray
) -> tuple[float, FloatArray, FloatArray]:
    """Penalised mean NLL of sigmoid(a x + b) with its gradient and Hessian in (a, b)."""
    z = theta[0] * x + theta[1]
    p = sigmoid(z)
    w = p * (1.0 - p)
    r = p - y
    value = _nll(z, y) + 0.5 * PLATT_L2 * float(theta @ theta)
    gradient = np.array([np.mean(r * x), np.mean(r)]) + PLATT_L2 * theta
    cross = float(np.mean(w * x))
    hessian = np.array([[np.mean(w * x * x), cross], [cross, np.mean(w)]]) + PLATT_L2 * np.eye(2)
    return value, gradient, hessian


def fit_platt(logits: npt.ArrayLike, y: npt.ArrayLike) -> tuple[float, float]:
    """(a, b) minimising the NLL of sigmoid(a * logit + b) plus a tiny L2 penalty.

    Damped Newton from the identity map (a=1, b=0): the objective is strictly convex in (a, b), so
    this converges in a handful of steps; the penalty keeps separable data from diverging.
    """
    x, labels = _training_data(logits, y)
    theta = np.array([1.0, 0.0])
    value, gradient, hessian = _platt_objective(theta, x, labels)
    for _ in range(_NEWTON_MAX_STEPS):
        if np.abs(gradient).max() < _NEWTON_GRADIENT_TOL:
            break
        step = np.linalg.solve(hessian, gradient)
        scale = 1.0
        while scale > 1e-10:  # backtrack until the objective decreases (Armijo)
            candidate = theta - scale * step
            new = _platt_objective(candidate, x, labels)
            if new[0] <= value - 1e-4 * scale * float(gradient @ step):
                break
            scale /= 2.0
        else:
            break  # no decrease possible at float precision: we are at the minimum
        theta, (value, gradient, hessian) = candidate, new
    return float(theta[0]), float(theta[1])


def _parse_error(kind: str, data: Mapping[str, Any], error: Exception) -> ModelPackageError:
    return ModelPackageError(f"invalid {kind} {dict(data)!r}: {error}")


@dataclass(frozen=True)
class FindingCalibration:
    """Calibrated probability = sigmoid(a * logit + b); temperature T is stored as a=1/T, b=0."""

    method: Method
    a: float
    b: float

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {self.method!r}")
        for name in ("a", "b"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)}")
        if self.method == "temperature" and (self.a <= 0.0 or self.b != 0.0):
            raise ValueError(f"temperature needs a > 0 and b == 0, got a={self.a}, b={self.b}")

    @property
    def temperature(self) -> float | None:
        """T for temperature scaling (None for Platt), the number papers report."""
        return 1.0 / self.a if self.method == "temperature" else None

    def apply(self, logits: npt.ArrayLike) -> FloatArray:
        """Calibrated probabilities for logits of any shape."""
        return sigmoid(self.a * np.asarray(logits, dtype=np.float64) + self.b)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FindingCalibration:
        """Parse a manifest entry; anything malformed is a `ModelPackageError` naming the field."""
        try:
            return cls(method=data["method"], a=float(data["a"]), b=float(data["b"]))
        except (KeyError, TypeError, ValueError) as error:
            raise _parse_error("calibration", data, error) from error


def fit_calibration(logits: npt.ArrayLike, y: npt.ArrayLike, method: Method) -> FindingCalibration:
    """Fit one finding's calibration on validation logits and 0/1 labels.

    A Platt fit whose slope is not positive (the model ranks this finding no better than chance,
    or backwards, on this data) falls back to temperature scaling: a package's calibration must
    keep the ranking its operating point was chosen on, and the manifest refuses a <= 0. The
    caller sees the fallback as `method == "temperature"` and says so.
    """
    if method == "temperature":
        return FindingCalibration("temperature", 1.0 / fit_temperature(logits, y), 0.0)
    if method == "platt":
        a, b = fit_platt(logits, y)
        if a <= 0.0:
            return FindingCalibration("temperature", 1.0 / fit_temperature(logits, y), 0.0)
        return FindingCalibration("platt", a, b)
    raise ValueError(f"method must be one of {METHODS}, got {method!r}")


def fit_calibrations(
    logits: npt.ArrayLike, labels: npt.ArrayLike, codes: Sequence[str], method: Method
) -> dict[str, FindingCalibration]:
    """{code: calibration} for [N, K] logits and labels, column k being finding `codes[k]`."""
    logit_matrix, label_matrix = np.asarray(logits), np.asarray(labels)
    if logit_matrix.ndim != 2 or logit_matrix.shape != label_matrix.shape:
        raise ValueError(
            f"logits and labels must both be [N, K] with the same shape, got "
            f"{logit_matrix.shape} and {label_matrix.shape}"
        )
    if len(codes) != logit_matrix.shape[1]:
        raise ValueError(f"codes must name the {logit_matrix.shape[1]} columns, got {codes}")
    fitted: dict[str, FindingCalibration] = {}
    for k, code in enumerate(codes):
        try:
            fitted[code] = fit_calibration(logit_matrix[:, k], label_matrix[:, k], method)
        except DatasetError as error:
            raise DatasetError(f"finding {code!r}: {error}") from error
    return fitted


@dataclass(frozen=True)
class OperatingPoint:
    """A flagging threshold (flag when probability >= threshold) and how it did when chosen."""

    threshold: float
    sensitivity: float
    specificity: float
    target_sensitivity: float
    n_positive: int
    n_negative: int

    def __post_init__(self) -> None:
        for name in ("threshold", "sensitivity", "specificity", "target_sensitivity"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {value}")
        if self.n_positive < 1 or self.n_negative < 0:
            raise ValueError(
                f"need n_positive >= 1 and n_negative >= 0, got {self.n_positive}, "
                f"{self.n_negative}"
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OperatingPoint:
        """Parse a manifest entry; anything malformed is a `ModelPackageError` naming the field."""
        try:
            return cls(
                threshold=float(data["threshold"]),
                sensitivity=float(data["sensitivity"]),
                specificity=float(data["specificity"]),
                target_sensitivity=float(data["target_sensitivity"]),
                n_positive=_as_int(data["n_positive"]),
                n_negative=_as_int(data["n_negative"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise _parse_error("operating point", data, error) from error


def _as_int(value: Any) -> int:
    if isinstance(value, bool) or int(value) != value:
        raise ValueError(f"expected a whole number, got {value!r}")
    return int(value)


def choose_operating_point(
    y: npt.ArrayLike, probs: npt.ArrayLike, target_sensitivity: float = 0.9
) -> OperatingPoint:
    """The HIGHEST threshold whose sensitivity on this data is >= the target.

    Highest, so specificity is as high as the target allows. That threshold is the score of the
    ceil(target * n_positive)-th highest-scoring positive: any higher threshold loses that case.
    """
    if not 0.0 < target_sensitivity <= 1.0:
        raise ValueError(f"target_sensitivity must be in (0, 1], got {target_sensitivity}")
    labels = _binary(y)
    values = _probabilities(probs, labels.size)
    n_positive, n_negative = _class_counts(labels, "choosing an operating point")
    needed = max(1, math.ceil(target_sensitivity * n_positive - 1e-9))
    threshold = float(np.sort(values[labels])[::-1][needed - 1])
    flagged = values >= threshold
    return OperatingPoint(
        threshold=threshold,
        sensitivity=float(flagged[labels].mean()),
        specificity=float((~flagged[~labels]).mean()),
        target_sensitivity=float(target_sensitivity),
        n_positive=n_positive,
        n_negative=n_negative,
    )
