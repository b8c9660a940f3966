"""Evaluation of multi-label findings: ROC, AUROC with a bootstrap interval, sensitivity at fixed
specificity, calibration error and sensitivity by subgroup.

Numpy only, so every number that ends up in a model package's manifest comes from code tested here
against brute-force definitions rather than from a library whose conventions drift between versions.

Conventions used throughout: labels are 0/1 (or bool), one per case; a case is flagged when its
score is >= the threshold; scores must be finite. Wrong shapes are programming errors
(`ValueError`); data that cannot support the metric (one class only, NaN, labels other than 0/1)
is a `DatasetError` whose message says what to fix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple, NotRequired, TypedDict

import numpy as np
import numpy.typing as npt

from diagnostics.errors import ConfigurationError, DatasetError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

# Resample cells held in memory at once by the bootstrap: 4e6 int64 = 32 MB per chunk.
_MAX_BOOT_CELLS = 4_000_000
_TOLERANCE = 1e-12  # so a specificity of exactly 0.9 counts as meeting a 0.9 target


class ReliabilityBin(NamedTuple):
    """One non-empty bin of a reliability diagram: where it lies, what was predicted, what was."""

    low: float
    high: float
    mean_prob: float
    frac_pos: float
    n_cases: int  # "count" would shadow tuple.count


class FindingMetrics(TypedDict):
    """JSON-ready metrics of one finding, as `evaluate` returns them and manifests store them.

    Thresholds are None where no finite threshold reaches the specificity (flag nothing).
    The last three keys are present only when `evaluate` was given a threshold for the finding.
    """

    n_positive: int
    n_negative: int
    auroc: float
    auroc_ci_95: list[float]
    sensitivity_at_90_specificity: float
    threshold_at_90_specificity: float | None
    sensitivity_at_95_specificity: float
    threshold_at_95_specificity: float | None
    ece: float
    threshold: NotRequired[float]
    sensitivity: NotRequired[float]
    specificity: NotRequired[float]


# --- input checks ---------------------------------------------------------------------------


def _binary(values: npt.ArrayLike, name: str = "labels") -> BoolArray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one value per case), got shape {array.shape}")
    if array.dtype == np.bool_:
        return array
    if array.dtype.kind not in "iuf" or not np.isin(array, (0, 1)).all():
        raise DatasetError(
            f"{name} must be 0 or 1 for every case; drop cases with missing or uncertain labels "
            "before evaluating"
        )
    return array.astype(np.bool_)


def _scores(values: npt.ArrayLike, n: int, name: str = "scores") -> FloatArray:
    array = np.asarray(values, dtype=np.float64)
    if array.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the labels, got {array.shape}")
    if not np.isfinite(array).all():
        raise DatasetError(f"{name} contain NaN or infinite values; check the model outputs")
    return array


def _probabilities(values: npt.ArrayLike, n: int) -> FloatArray:
    array = _scores(values, n, "probabilities")
    if array.size and (array.min() < 0.0 or array.max() > 1.0):
        raise DatasetError("probabilities must lie in [0, 1]; pass sigmoid outputs, not logits")
    return array


def _class_counts(labels: BoolArray, what: str) -> tuple[int, int]:
    n_positive = int(labels.sum())
    n_negative = labels.size - n_positive
    if n_positive == 0 or n_negative == 0:
        raise DatasetError(
            f"{what} needs both positive and negative cases, got {n_positive} positive and "
            f"{n_negative} negative; evaluate on a set that contains both"
        )
    return n_positive, n_negative


# --- ROC and AUROC --------------------------------------------------------------------------


def roc_curve(
    y_true: npt.ArrayLike, scores: npt.ArrayLike
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(fpr, tpr, thresholds), one point per distinct score from the highest down.

    The first point is (0, 0) at threshold +inf (flag nothing), so the curve always starts at the
    origin; the last is (1, 1) at the lowest score.
    """
    labels = _binary(y_true)
    values = _scores(scores, labels.size)
    n_positive, n_negative = _class_counts(labels, "an ROC curve")
    order = np.argsort(-values, kind="stable")
    ranked, hits = values[order], labels[order]
    last_of_each_score = np.r_[np.flatnonzero(np.diff(ranked)), ranked.size - 1]
    tpr = np.r_[0.0, np.cumsum(hits)[last_of_each_score] / n_positive]
    fpr = np.r_[0.0, np.cumsum(~hits)[last_of_each_score] / n_negative]
    return fpr, tpr, np.r_[np.inf, ranked[last_of_each_score]]


def _average_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks with ties sharing their mean rank (what Mann-Whitney needs)."""
    order = np.argsort(values, kind="stable")
    ordered = values[order]
    starts = np.r_[0, np.flatnonzero(np.diff(ordered)) + 1]
    ends = np.r_[starts[1:], values.size]
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.repeat((starts + ends + 1) / 2.0, ends - starts)
    return ranks


def auroc(y_true: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve via the Mann-Whitney U statistic; a tied pair counts one half."""
    labels = _binary(y_true)
    values = _scores(scores, labels.size)
    n_positive, n_negative = _class_counts(labels, "AUROC")
    u = _average_ranks(values)[labels].sum() - n_positive * (n_positive + 1) / 2.0
    return float(u / (n_positive * n_negative))


def _auroc_from_counts(positives: IntArray, negatives: IntArray) -> FloatArray:
    """Mann-Whitney AUROC per row, from case counts per distinct score (ascending) and class.

    Rows lacking a class give NaN. Same tie rule as `auroc`: a tied pair counts one half.
    """
    negatives_below = np.cumsum(negatives, axis=1) - negatives
    u = (positives * (negatives_below + 0.5 * negatives)).sum(axis=1)
    pairs = positives.sum(axis=1) * negatives.sum(axis=1)
    result = np.full(u.shape, np.nan)
    np.divide(u, pairs, out=result, where=pairs > 0)
    return result


def _bootstrap_aurocs(
    labels: BoolArray, values: FloatArray, n_boot: int, rng: np.random.Generator
) -> FloatArray:
    """AUROC of each of `n_boot` resamples (NaN for single-class ones), without any Python loop
    over resamples: each draw is binned into (distinct score, class) cells and counted."""
    _, score_index = np.unique(values, return_inverse=True)
    n_scores = int(score_index.max()) + 1
    cell = score_index.astype(np.int64) * 2 + labels
    rows_per_chunk = max(1, _MAX_BOOT_CELLS // max(labels.size, 2 * n_scores))
    results = []
    for start in range(0, n_boot, rows_per_chunk):
        rows = min(rows_per_chunk, n_boot - start)
        draws = rng.integers(0, labels.size, size=(rows, labels.size))
        flat = cell[draws] + 2 * n_scores * np.arange(rows)[:, None]
        counts = np.bincount(flat.ravel(), minlength=rows * 2 * n_scores)
        counts = counts.reshape(rows, n_scores, 2)
        results.append(_auroc_from_counts(counts[:, :, 1], counts[:, :, 0]))
    return np.concatenate(results)


def bootstrap_auroc_ci(
    y_true: npt.ArrayLike,
    scores: npt.ArrayLike,
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap interval of the AUROC, resampling cases with replacement.

    Resamples that happen to contain one class only are skipped (their AUROC is undefined), so
    with very few positives the interval rests on fewer than `n_boot` resamples.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    labels = _binary(y_true)
    values = _scores(scores, labels.size)
    n_positive, n_negative = _class_counts(labels, "a bootstrap AUROC interval")
    aurocs = _bootstrap_aurocs(labels, values, n_boot, np.random.default_rng(seed))
    aurocs = aurocs[~np.isnan(aurocs)]
    if aurocs.size == 0:
        raise DatasetError(
            f"every bootstrap resample held one class only ({n_positive} positive, {n_negative} "
            "negative cases); collect more cases of the rarer class"
        )
    low, high = np.quantile(aurocs, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(low), float(high)


def sensitivity_at_specificity(
    y_true: npt.ArrayLike, scores: npt.ArrayLike, specificity: float
) -> tuple[float, float]:
    """(sensitivity, threshold): the highest sensitivity whose specificity is >= `specificity`.

    Of the thresholds reaching that sensitivity the highest (most specific) is returned; it is
    +inf when no finite threshold meets the specificity target (flag nothing).
    """
    if not 0.0 <= specificity <= 1.0:
        raise ValueError(f"specificity must be in [0, 1], got {specificity}")
    fpr, tpr, thresholds = roc_curve(y_true, scores)
    meets = (1.0 - fpr) >= specificity - _TOLERANCE  # a prefix: fpr never decreases
    best = tpr[meets].max()
    first = int(np.flatnonzero(meets & (tpr == best))[0])
    return float(best), float(thresholds[first])


# --- calibration error ----------------------------------------------------------------------


def reliability_bins(
    y_true: npt.ArrayLike, probs: npt.ArrayLike, bins: int = 10
) -> list[ReliabilityBin]:
    """Equal-width bins over [0, 1] (left-closed; 1.0 joins the last), non-empty ones only.

    Empty bins are left out rather than given NaN means, so the list plots and serialises as is.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    labels = _binary(y_true)
    values = _probabilities(probs, labels.size)
    if labels.size == 0:
        raise DatasetError("no cases to bin; calibration needs at least one case")
    index = np.minimum((values * bins).astype(np.int64), bins - 1)
    count = np.bincount(index, minlength=bins)
    sum_prob = np.bincount(index, weights=values, minlength=bins)
    sum_pos = np.bincount(index, weights=labels.astype(np.float64), minlength=bins)
    return [
        ReliabilityBin(
            low=i / bins,
            high=(i + 1) / bins,
            mean_prob=float(sum_prob[i] / count[i]),
            frac_pos=float(sum_pos[i] / count[i]),
            n_cases=int(count[i]),
        )
        for i in np.flatnonzero(count)
    ]


def expected_calibration_error(
    y_true: npt.ArrayLike, probs: npt.ArrayLike, bins: int = 10
) -> float:
    """Case-weighted mean gap between predicted probability and observed frequency per bin."""
    table = reliability_bins(y_true, probs, bins)
    total = sum(b.n_cases for b in table)
    return float(sum(b.n_cases * abs(b.mean_prob - b.frac_pos) for b in table) / total)


# --- subgroups ------------------------------------------------------------------------------


def nodule_size_group(diameter_mm: float, cutoff_mm: float = 10.0) -> str:
    """Size group label ("<=10mm" or ">10mm"): early-stage nodules are the ones that matter."""
    return f"<={cutoff_mm:g}mm" if diameter_mm <= cutoff_mm else f">{cutoff_mm:g}mm"


def sensitivity_by_group(
    y_true: npt.ArrayLike, flagged: npt.ArrayLike, groups: Iterable[str | None]
) -> dict[str, tuple[float, int]]:
    """{group: (sensitivity, n_positive)} over the positive cases of each group, sorted by name.

    Only positives need a group (negatives may carry None); a positive without one is an error,
    because silently dropping it would overstate sensitivity.
    """
    labels = _binary(y_true)
    hits = _binary(flagged, "flagged")
    names = [None if g is None else str(g) for g in groups]
    if hits.size != labels.size or len(names) != labels.size:
        raise ValueError(
            f"y_true, flagged and groups must have one entry per case: got {labels.size}, "
            f"{hits.size} and {len(names)}"
        )
    positive = np.flatnonzero(labels)
    if any(names[i] is None for i in positive):
        raise DatasetError("every positive case needs a group (e.g. a nodule size); some have None")
    by_group: dict[str, list[bool]] = {}
    for i in positive:
        by_group.setdefault(str(names[i]), []).append(bool(hits[i]))
    return {name: (sum(v) / len(v), len(v)) for name, v in sorted(by_group.items())}


# --- everything for a model -----------------------------------------------------------------


def _finite_or_none(value: float) -> float | None:
    return value if np.isfinite(value) else None


def _finding_metrics(
    labels: BoolArray, probs: FloatArray, threshold: float | None, n_boot: int, seed: int
) -> FindingMetrics:
    n_positive, n_negative = _class_counts(labels, "evaluation")
    low, high = bootstrap_auroc_ci(labels, probs, n_boot=n_boot, seed=seed)
    sens_90, thr_90 = sensitivity_at_specificity(labels, probs, 0.90)
    sens_95, thr_95 = sensitivity_at_specificity(labels, probs, 0.95)
    result = FindingMetrics(
        n_positive=n_positive,
        n_negative=n_negative,
        auroc=auroc(labels, probs),
        auroc_ci_95=[low, high],
        sensitivity_at_90_specificity=sens_90,
        threshold_at_90_specificity=_finite_or_none(thr_90),
        sensitivity_at_95_specificity=sens_95,
        threshold_at_95_specificity=_finite_or_none(thr_95),
        ece=expected_calibration_error(labels, probs),
    )
    if threshold is not None:
        flagged = probs >= threshold
        result["threshold"] = float(threshold)
        result["sensitivity"] = float(flagged[labels].mean())
        result["specificity"] = float((~flagged[~labels]).mean())
    return result


def _check_matrix_inputs(labels: npt.ArrayLike, probs: npt.ArrayLike, codes: Sequence[str]) -> None:
    label_shape, prob_shape = np.shape(labels), np.shape(probs)
    if len(label_shape) != 2 or label_shape != prob_shape:
        raise ValueError(
            f"labels and probs must both be [N, K] with the same shape, got {label_shape} and "
            f"{prob_shape}"
        )
    if len(codes) != label_shape[1] or len(set(codes)) != len(codes):
        raise ValueError(f"codes must name the {label_shape[1]} columns once each, got {codes}")


def evaluate(
    labels: npt.ArrayLike,
    probs: npt.ArrayLike,
    codes: Sequence[str],
    thresholds: Mapping[str, float] | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict[str, FindingMetrics]:
    """Per-finding metrics for `labels` and `probs` ([N, K], column k is finding `codes[k]`).

    Every finding uses the same bootstrap seed, so their intervals come from the same resampled
    cases and can be compared pairwise. With `thresholds`, each finding also gets sensitivity and
    specificity at its operating point; a finding missing from `thresholds` is an error.
    """
    _check_matrix_inputs(labels, probs, codes)
    if thresholds is not None and (missing := [c for c in codes if c not in thresholds]):
        raise ConfigurationError(f"thresholds has no entry for finding(s) {missing}")
    label_matrix, prob_matrix = np.asarray(labels), np.asarray(probs)
    report: dict[str, FindingMetrics] = {}
    for k, code in enumerate(codes):
        threshold = None if thresholds is None else thresholds[code]
        try:
            column_labels = _binary(label_matrix[:, k])
            column_probs = _probabilities(prob_matrix[:, k], column_labels.size)
            report[code] = _finding_metrics(column_labels, column_probs, threshold, n_boot, seed)
        except DatasetError as error:
            raise DatasetError(f"finding {code!r}: {error}") from error
    return report


def as_curves(
    labels: npt.ArrayLike, probs: npt.ArrayLike, codes: Sequence[str]
) -> dict[str, tuple[FloatArray, FloatArray, float]]:
    """{code: (fpr, tpr, auroc)}: what `plots.roc_figure` draws, for [N, K] inputs."""
    _check_matrix_inputs(labels, probs, codes)
    label_matrix, prob_matrix = np.asarray(labels), np.asarray(probs)
    curves: dict[str, tuple[FloatArray, FloatArray, float]] = {}
    for k, code in enumerate(codes):
        fpr, tpr, _ = roc_curve(label_matrix[:, k], prob_matrix[:, k])
        curves[code] = (fpr, tpr, auroc(label_matrix[:, k], prob_matrix[:, k]))
    return curves
