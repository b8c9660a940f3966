"""Is a candidate model package better than the current one? Both on the same labelled studies.

Deploying a retrained model should rest on a comparison that could have said "worse". Here both
packages run through their own preprocessing spec and ONNX graph (`OnnxEngine`) on the same
studies, and for every finding both report:

- AUROC, with a **paired** bootstrap: each resample draws studies once and scores both models
  on the same draw, so the interval of the difference reflects how much the models disagree,
  not how hard the studies are (independent intervals would be far wider and could hide a real
  difference). AUROC is computed on logits, whose ranking calibration cannot change.
- sensitivity and specificity at each package's own operating point (manifest threshold on the
  package's calibrated probability): what a radiologist would see flagged;
- expected calibration error of the calibrated probabilities.

The verdict follows `RULE`, printed with every comparison. What it does not show: anything about
studies unlike the test set, the header scope and appearance gates (images are preprocessed
directly, so PNG layouts can be used), or more than one test set; intervals are not corrected
for testing several findings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from diagnostics.datasets import get_layout, load_dataset
from diagnostics.datasets.records import UNKNOWN_LABEL, Example
from diagnostics.errors import ConfigurationError, DatasetError
from diagnostics.package import ModelPackage, load_package
from diagnostics.preprocess import to_model_input
from diagnostics.screening.engine import OnnxEngine
from diagnostics.train.data import preprocess_file
from diagnostics.train.metrics import _auroc_from_counts, auroc, expected_calibration_error

Verdict = Literal["better", "not different", "worse"]
VERDICTS: tuple[Verdict, ...] = ("better", "not different", "worse")
RULE = (
    "Per finding: 'better' when the 95% paired-bootstrap interval of AUROC(candidate) - "
    "AUROC(current) lies entirely above 0, 'worse' when entirely below 0, otherwise 'not "
    "different'. Overall: 'worse' when any finding is worse, 'better' when at least one finding "
    "is better and none is worse, otherwise 'not different'. No correction for several findings."
)
_MAX_CELLS = 4_000_000  # resample cells per chunk (int64): 32 MB


def verdict_for(low: float, high: float) -> Verdict:
    """One finding's verdict from the interval of the AUROC difference (candidate - current)."""
    if low > 0.0:
        return "better"
    if high < 0.0:
        return "worse"
    return "not different"


def overall_verdict(verdicts: Sequence[Verdict]) -> Verdict:
    """`RULE`'s overall part: one worse finding makes the candidate worse."""
    if "worse" in verdicts:
        return "worse"
    if "better" in verdicts:
        return "better"
    return "not different"


# --- paired bootstrap -----------------------------------------------------------------------


class PairedBootstrap(NamedTuple):
    difference_ci: tuple[float, float]
    candidate_ci: tuple[float, float]
    current_ci: tuple[float, float]
    resamples: int
    """Resamples with both classes present (the others have no AUROC and are skipped)."""


def _cells(labels: npt.NDArray[np.bool_], scores: npt.NDArray[np.float64]) -> tuple[Any, int]:
    """Each case's (distinct score, class) cell, and the number of distinct scores."""
    _, index = np.unique(scores, return_inverse=True)
    return index.astype(np.int64) * 2 + labels, int(index.max()) + 1


def _resampled_aurocs(cell: Any, n_scores: int, draws: npt.NDArray[np.int64]) -> Any:
    """AUROC of every row of `draws` (case indices), by counting cells as metrics.py does."""
    rows = draws.shape[0]
    flat = cell[draws] + 2 * n_scores * np.arange(rows)[:, None]
    counts = np.bincount(flat.ravel(), minlength=rows * 2 * n_scores).reshape(rows, n_scores, 2)
    return _auroc_from_counts(counts[:, :, 1], counts[:, :, 0])


def paired_bootstrap(
    labels: npt.ArrayLike,
    candidate: npt.ArrayLike,
    current: npt.ArrayLike,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    alpha: float = 0.05,
) -> PairedBootstrap:
    """Percentile intervals of both AUROCs and of their difference from the same resamples."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    y = np.asarray(labels)
    if y.ndim != 1 or not np.isin(y, (0, 1)).all():
        raise DatasetError("labels must be one 0/1 value per study (drop unknown labels first)")
    y = y.astype(np.bool_)
    a = np.asarray(candidate, dtype=np.float64)
    b = np.asarray(current, dtype=np.float64)
    if a.shape != y.shape or b.shape != y.shape:
        raise ValueError(f"scores must have shape {y.shape}, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise DatasetError("scores contain NaN or infinite values; check the model outputs")
    if y.all() or not y.any():
        raise DatasetError("a paired AUROC bootstrap needs positive and negative studies")
    cell_a, n_a = _cells(y, a)
    cell_b, n_b = _cells(y, b)
    rng = np.random.default_rng(seed)
    chunk = max(1, _MAX_CELLS // max(y.size, 2 * max(n_a, n_b)))
    first, second = [], []
    for start in range(0, n_boot, chunk):
        draws = rng.integers(0, y.size, size=(min(chunk, n_boot - start), y.size))
        first.append(_resampled_aurocs(cell_a, n_a, draws))
        second.append(_resampled_aurocs(cell_b, n_b, draws))
    boot_a, boot_b = np.concatenate(first), np.concatenate(second)
    valid = ~(np.isnan(boot_a) | np.isnan(boot_b))
    if not valid.any():
        raise DatasetError("every resample held one class only; the test set is too small")
    quantiles = [alpha / 2.0, 1.0 - alpha / 2.0]

    def interval(values: Any) -> tuple[float, float]:
        low, high = np.quantile(values[valid], quantiles)
        return float(low), float(high)

    return PairedBootstrap(
        interval(boot_a - boot_b), interval(boot_a), interval(boot_b), int(valid.sum())
    )


# --- results --------------------------------------------------------------------------------


def _check_interval(name: str, interval: tuple[float, float]) -> None:
    low, high = interval
    if not (math.isfinite(low) and math.isfinite(high) and low <= high):
        raise ValueError(f"{name} must be a finite (low, high) interval, got {interval}")


@dataclass(frozen=True)
class ModelResult:
    """One package's numbers for one finding on the comparison set."""

    auroc: float
    auroc_ci_95: tuple[float, float]
    threshold: float
    sensitivity: float
    specificity: float
    ece: float

    def __post_init__(self) -> None:
        _check_interval("auroc_ci_95", self.auroc_ci_95)
        for name in ("auroc", "threshold", "sensitivity", "specificity", "ece"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")


@dataclass(frozen=True)
class FindingComparison:
    code: str
    n_positive: int
    n_negative: int
    n_unknown: int
    """Studies whose label for this finding is unknown, left out of its numbers."""
    candidate: ModelResult
    current: ModelResult
    auroc_difference: float
    difference_ci_95: tuple[float, float]
    resamples: int
    verdict: Verdict

    def __post_init__(self) -> None:
        _check_interval("difference_ci_95", self.difference_ci_95)
        if self.verdict != verdict_for(*self.difference_ci_95):
            raise ValueError(f"verdict {self.verdict!r} does not follow the rule for the interval")


@dataclass(frozen=True)
class PackageRef:
    name: str
    version: str
    sha256: str
    path: str

    @classmethod
    def of(cls, package: ModelPackage) -> PackageRef:
        m = package.manifest
        return cls(m.name, m.version, m.sha256, str(package.path))

    def label(self) -> str:
        return f"{self.name} {self.version} (sha256 {self.sha256[:12]}) at {self.path}"


@dataclass(frozen=True)
class Comparison:
    """Everything `diagnostics compare` prints and writes as JSON."""

    candidate: PackageRef
    current: PackageRef
    data: str
    studies: int
    findings: tuple[FindingComparison, ...]
    verdict: Verdict
    n_boot: int
    seed: int
    skipped: dict[str, str] = field(default_factory=dict)
    """Findings not compared, with the reason (only one package has it, one class only, ...)."""
    rule: str = RULE

    def __post_init__(self) -> None:
        if self.verdict != overall_verdict([f.verdict for f in self.findings]):
            raise ValueError(f"overall verdict {self.verdict!r} does not follow the rule")

    @property
    def identical_models(self) -> bool:
        return self.candidate.sha256 == self.current.sha256

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["identical_models"] = self.identical_models
        return out

    def summary_lines(self) -> list[str]:
        lines = [
            f"candidate: {self.candidate.label()}",
            f"current:   {self.current.label()}",
            f"data:      {self.data}: {self.studies} studies; paired bootstrap of studies, "
            f"{self.n_boot} resamples, seed {self.seed}",
        ]
        if self.identical_models:
            lines.append("note:      both packages hold the same model.onnx (same sha256)")
        lines.append(
            f"{'finding':14} {'pos/neg':>9} {'AUROC cand':>10} {'AUROC cur':>9} "
            f"{'difference [95% CI]':>26} {'sens/spec cand':>14} {'sens/spec cur':>13} "
            f"{'ECE cand/cur':>12}  verdict"
        )
        for f in self.findings:
            low, high = f.difference_ci_95
            c, r = f.candidate, f.current
            lines.append(
                f"{f.code:14} {f'{f.n_positive}/{f.n_negative}':>9} {c.auroc:10.3f} "
                f"{r.auroc:9.3f} {f'{f.auroc_difference:+.3f} [{low:+.3f}, {high:+.3f}]':>26} "
                f"{f'{c.sensitivity:.2f}/{c.specificity:.2f}':>14} "
                f"{f'{r.sensitivity:.2f}/{r.specificity:.2f}':>13} "
                f"{f'{c.ece:.3f}/{r.ece:.3f}':>12}  {f.verdict}"
            )
        for code, reason in self.skipped.items():
            lines.append(f"{code:14} not compared: {reason}")
        lines.append(f"overall: {self.verdict.upper()}")
        lines.append(f"rule: {self.rule}")
        return lines


# --- running the models ---------------------------------------------------------------------


def model_logits(
    package: ModelPackage,
    examples: Sequence[Example],
    *,
    threads: int | None = None,
    batch_size: int = 32,
    cache_dir: Path | None = None,
) -> npt.NDArray[np.float64]:
    """Logits (N, K) of a package on the examples, preprocessed with the package's own spec."""
    spec = package.manifest.preprocessing
    engine = OnnxEngine(package, threads=threads, max_batch=batch_size, timeout_s=None)
    outputs = []
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        images = [to_model_input(preprocess_file(e.path, spec, cache_dir), spec) for e in chunk]
        outputs.append(engine.run(np.stack([image.numpy() for image in images])).logits)
    return np.concatenate(outputs).astype(np.float64)


def shared_codes(
    candidate: ModelPackage, current: ModelPackage, labelled: Sequence[str] | None = None
) -> tuple[tuple[str, ...], dict[str, str]]:
    """Findings both packages report (and the data label), in the candidate's order; the rest
    with the reason they cannot be compared."""
    skipped: dict[str, str] = {}
    for code in candidate.finding_codes:
        if code not in current.finding_codes:
            skipped[code] = "only the candidate reports it"
    for code in current.finding_codes:
        if code not in candidate.finding_codes:
            skipped[code] = "only the current model reports it"
    codes = tuple(c for c in candidate.finding_codes if c in current.finding_codes)
    if labelled is not None:
        for code in codes:
            if code not in labelled:
                skipped[code] = "the data do not label it"
        codes = tuple(c for c in codes if c in labelled)
    return codes, skipped


def _side(
    package: ModelPackage,
    code: str,
    labels: npt.NDArray[np.bool_],
    logits: npt.NDArray[np.float64],
    ci: tuple[float, float],
) -> ModelResult:
    probs = package.manifest.calibration[code].probability(logits)
    threshold = package.manifest.operating_points[code].threshold
    flagged = probs >= threshold
    return ModelResult(
        auroc=auroc(labels, logits),
        auroc_ci_95=ci,
        threshold=threshold,
        sensitivity=float(flagged[labels].mean()),
        specificity=float((~flagged[~labels]).mean()),
        ece=expected_calibration_error(labels, probs),
    )


def compare_logits(
    candidate: ModelPackage,
    current: ModelPackage,
    labels: npt.ArrayLike,
    codes: Sequence[str],
    candidate_logits: Mapping[str, npt.ArrayLike],
    current_logits: Mapping[str, npt.ArrayLike],
    *,
    n_boot: int = 2000,
    seed: int = 0,
) -> tuple[list[FindingComparison], dict[str, str]]:
    """Per finding comparisons from logits already computed; `labels` is [N, len(codes)].

    A finding whose known labels hold one class only cannot have an AUROC; it is skipped
    with that reason rather than failing the whole comparison.
    """
    matrix = np.asarray(labels)
    results, skipped = [], {}
    for k, code in enumerate(codes):
        column = matrix[:, k]
        known = column != UNKNOWN_LABEL
        y = column[known].astype(np.bool_)
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        if n_pos == 0 or n_neg == 0:
            skipped[code] = f"the data hold {n_pos} positive and {n_neg} negative studies"
            continue
        a = np.asarray(candidate_logits[code], dtype=np.float64)[known]
        b = np.asarray(current_logits[code], dtype=np.float64)[known]
        boot = paired_bootstrap(y, a, b, n_boot=n_boot, seed=seed)
        cand = _side(candidate, code, y, a, boot.candidate_ci)
        cur = _side(current, code, y, b, boot.current_ci)
        results.append(
            FindingComparison(
                code=code,
                n_positive=n_pos,
                n_negative=n_neg,
                n_unknown=int((~known).sum()),
                candidate=cand,
                current=cur,
                auroc_difference=cand.auroc - cur.auroc,
                difference_ci_95=boot.difference_ci,
                resamples=boot.resamples,
                verdict=verdict_for(*boot.difference_ci),
            )
        )
    return results, skipped


def compare_packages(
    candidate: ModelPackage,
    current: ModelPackage,
    examples: Sequence[Example],
    codes: Sequence[str],
    *,
    data: str = "labelled studies",
    n_boot: int = 2000,
    seed: int = 0,
    threads: int | None = None,
    cache_dir: Path | None = None,
    skipped: Mapping[str, str] | None = None,
) -> Comparison:
    """Run both packages on `examples` (labels in the order of `codes`) and compare them."""
    if not examples:
        raise DatasetError("no studies to compare the models on")
    for code in codes:
        for package in (candidate, current):
            if code not in package.finding_codes:
                raise ConfigurationError(f"{package.path} does not report {code!r}")
    logits = {}
    for side, package in (("candidate", candidate), ("current", current)):
        values = model_logits(package, examples, threads=threads, cache_dir=cache_dir)
        order = package.finding_codes
        logits[side] = {code: values[:, order.index(code)] for code in codes}
    labels = np.array([e.labels for e in examples])
    findings, one_class = compare_logits(
        candidate,
        current,
        labels,
        codes,
        logits["candidate"],
        logits["current"],
        n_boot=n_boot,
        seed=seed,
    )
    if not findings:
        raise DatasetError(f"no finding could be compared: {one_class}")
    return Comparison(
        candidate=PackageRef.of(candidate),
        current=PackageRef.of(current),
        data=data,
        studies=len(examples),
        findings=tuple(findings),
        verdict=overall_verdict([f.verdict for f in findings]),
        n_boot=n_boot,
        seed=seed,
        skipped={**(skipped or {}), **one_class},
    )


def compare_on_dataset(
    candidate: str | Path | ModelPackage,
    current: str | Path | ModelPackage,
    root: str | Path,
    *,
    layout: str = "synth",
    split: str = "test",
    options: Mapping[str, object] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    threads: int | None = None,
    cache_dir: Path | None = None,
) -> Comparison:
    """Load both packages and the dataset's `split` in `layout`; compare on the findings all
    three share. What `diagnostics compare` runs."""
    first = candidate if isinstance(candidate, ModelPackage) else load_package(candidate)
    second = current if isinstance(current, ModelPackage) else load_package(current)
    codes, skipped = shared_codes(first, second, get_layout(layout).codes)
    if not codes:
        raise ConfigurationError(
            f"the packages and the {layout} layout share no finding: {skipped}"
        )
    examples = load_dataset(layout, root, codes, split=split, **(options or {}))
    data = f"{layout} layout at {root}, split {split!r}"
    return compare_packages(
        first,
        second,
        examples,
        codes,
        data=data,
        n_boot=n_boot,
        seed=seed,
        threads=threads,
        cache_dir=cache_dir,
        skipped=skipped,
    )
