"""Site calibration: re-derive a package's calibration and operating points on local studies.

A model's probabilities and thresholds were fitted where it was trained; a hospital's scanners,
population and prevalence differ, and WHO's guidance for chest X-ray CAD is to set thresholds
locally. `calibrate_package` screens a labelled folder (e.g. a `diagnostics feedback export`)
with the package's own preprocessing and graph (`compare.model_logits`), refits each labelled
finding's calibration with the package's method (Platt or temperature; `none` becomes
temperature), chooses the highest threshold that reaches the target sensitivity on the
calibrated probabilities, and writes a new package version recording the site, the data summary
and sensitivity/specificity with Wilson 95% intervals (`Manifest.site_calibration`). The graph
is copied unchanged, so only numbers a reviewer can read in the manifest differ.

Refused, naming the finding: too few positives or negatives, or a fit that would invert the
finding (the site's labels rank below chance). Unknown labels (-1 or empty) are skipped and
counted; a finding labels.csv lacks keeps its previous calibration and is listed as kept.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from diagnostics.compare import model_logits
from diagnostics.datasets.labelled import LABELS_FILE, load_labelled_folder
from diagnostics.datasets.records import UNKNOWN_LABEL, Example
from diagnostics.errors import DatasetError, ModelPackageError
from diagnostics.package import MODEL_FILE, Calibration, ModelPackage, load_package, write_package
from diagnostics.package.manifest import SiteCalibration, SiteFindingResult
from diagnostics.package.reference import ReferenceDistributions, reference_from
from diagnostics.preprocess import to_model_input
from diagnostics.train.calibration import Method, choose_operating_point, fit_calibration
from diagnostics.train.data import preprocess_file
from diagnostics.train.metrics import auroc

MIN_POSITIVES = 10
MIN_NEGATIVES = 10
_Z95 = 1.959963984540054


def wilson_interval(successes: int, total: int, z: float = _Z95) -> tuple[float, float]:
    """Wilson score 95% interval of a proportion: sound at 0% and 100% and for small counts,
    where the normal approximation gives intervals outside [0, 1] or of zero width."""
    if total < 1 or not 0 <= successes <= total:
        raise ValueError(f"need 0 <= successes <= total and total >= 1, got {successes}/{total}")
    p = successes / total
    denominator = 1.0 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


def site_version(previous: str, site: str) -> str:
    """`1.2.0+site.<site>`: the previous version without its build metadata, tagged with the
    site (characters semver refuses become '-')."""
    slug = re.sub(r"[^0-9A-Za-z-]+", "-", site).strip("-") or "site"
    return f"{previous.split('+', 1)[0]}+site.{slug}"


def labelled_columns(folder: Path) -> list[str]:
    """The header of the folder's labels.csv (to tell absent findings from unknown labels)."""
    path = folder / LABELS_FILE
    if not path.is_file():
        raise DatasetError(f"{path}: no labels file (expected {LABELS_FILE} beside the studies)")
    with path.open(newline="", encoding="utf-8-sig") as handle:
        return [name.strip() for name in next(csv.reader(handle), [])]


@dataclass(frozen=True)
class CalibrationResult:
    """The published package and what was recorded in it."""

    package: ModelPackage
    site_calibration: SiteCalibration

    def summary_lines(self) -> list[str]:
        site = self.site_calibration
        m = self.package.manifest
        lines = [
            f"package: {m.name} {m.version} at {self.package.path} (from {site.previous_version})",
            f"site:    {site.site}, {site.date}; {site.studies} studies in {site.data}; "
            f"target sensitivity {site.target_sensitivity:.2f}",
            f"{'finding':14} {'pos/neg/unk':>12} {'threshold':>9}  {'sensitivity [95% CI]':>22}"
            f"  {'specificity [95% CI]':>22}",
        ]
        for code, r in site.findings.items():
            sens = (
                f"{r.sensitivity:.2f} [{r.sensitivity_ci_95[0]:.2f}, {r.sensitivity_ci_95[1]:.2f}]"
            )
            spec = (
                f"{r.specificity:.2f} [{r.specificity_ci_95[0]:.2f}, {r.specificity_ci_95[1]:.2f}]"
            )
            counts = f"{r.positives}/{r.negatives}/{r.unknown}"
            lines.append(f"{code:14} {counts:>12} {r.threshold:9.4f}  {sens:>22}  {spec:>22}")
        for code in site.kept:
            lines.append(
                f"{code:14} kept the previous calibration: labels.csv has no {code} column"
            )
        return lines


def _refit(
    code: str,
    previous: Calibration,
    y: npt.NDArray[np.bool_],
    logits: npt.NDArray[np.float64],
    fitted_on: str,
) -> Calibration:
    """The finding's calibration refitted with its method; refused if it would invert it."""
    score = auroc(y, logits)
    if score <= 0.5:
        raise DatasetError(
            f"finding {code!r}: the model ranks this site's positives no better than chance "
            f"(AUROC {score:.2f} on these labels); calibrating would invert or erase the "
            "finding. Check the labels of this finding, or do not use the model for it here"
        )
    method: Method = "platt" if previous.method == "platt" else "temperature"
    fitted = fit_calibration(logits, y, method)
    if fitted.a <= 0.0:
        raise DatasetError(
            f"finding {code!r}: the fitted calibration slope is {fitted.a:.3g} (must be > 0): "
            "it would invert the finding's ranking. Check the labels of this finding"
        )
    return Calibration(method=method, a=fitted.a, b=fitted.b, fitted_on=fitted_on)


def site_reference(
    package: ModelPackage,
    manifest: dict[str, Any],
    examples: Sequence[Example],
    logits: npt.NDArray[np.float64],
    where: str,
    cache_dir: Path | None,
) -> ReferenceDistributions:
    """The new version's drift reference: every site study's probability under the new
    calibration (labelled or not), and its appearance score under the package's profile."""
    probabilities = {
        code: Calibration.model_validate(manifest["calibration"][code]).probability(logits[:, k])
        for k, code in enumerate(package.finding_codes)
    }
    profile, spec = package.manifest.appearance, package.manifest.preprocessing
    scores = None
    if profile is not None:
        scores = [
            float(
                profile.score(to_model_input(preprocess_file(e.path, spec, cache_dir), spec)[None])[
                    0
                ]
            )
            for e in examples
        ]
    return reference_from(probabilities, scores, data=where, studies=len(examples))


def calibrate_package(
    model: str | Path | ModelPackage,
    data: str | Path,
    out: str | Path,
    *,
    target_sensitivity: float,
    site: str,
    min_positives: int = MIN_POSITIVES,
    min_negatives: int = MIN_NEGATIVES,
    version: str | None = None,
    threads: int | None = None,
    cache_dir: Path | None = None,
) -> CalibrationResult:
    """Screen `data` with `model`, refit calibration and operating points, publish at `out`.

    The previous package is only read; `out` must be new (packages are immutable).
    """
    if not 0.0 < target_sensitivity <= 1.0:
        raise DatasetError(f"target sensitivity must be in (0, 1], got {target_sensitivity}")
    if not site.strip():
        raise DatasetError("the site name must not be empty")
    destination = Path(out)
    if destination.exists() and (not destination.is_dir() or any(destination.iterdir())):
        raise ModelPackageError(
            f"{destination}: already exists; choose a new folder (packages are immutable)"
        )
    package = model if isinstance(model, ModelPackage) else load_package(model)
    folder = Path(data)
    columns = labelled_columns(folder)
    codes = [c for c in package.finding_codes if c in columns]
    kept = [c for c in package.finding_codes if c not in columns]
    if not codes:
        raise DatasetError(
            f"{folder / LABELS_FILE} has no column for any finding of the package "
            f"({', '.join(package.finding_codes)})"
        )
    examples = load_labelled_folder(folder, codes, allow_unknown=True)
    if not examples:
        raise DatasetError(f"{folder}: no labelled studies to calibrate on")
    labels = np.array([e.labels for e in examples])
    problems = []
    for k, code in enumerate(codes):
        column = labels[:, k]
        n_pos, n_neg = int((column == 1).sum()), int((column == 0).sum())
        if n_pos < min_positives or n_neg < min_negatives:
            problems.append(
                f"finding {code!r} has {n_pos} positive and {n_neg} negative studies with known "
                f"labels (at least {min_positives} and {min_negatives} needed)"
            )
    if problems:
        raise DatasetError(
            "too few labelled studies to calibrate: " + "; ".join(problems) + ". Label more "
            "studies, or drop the finding's column to keep its previous calibration"
        )
    all_logits = model_logits(package, examples, threads=threads, cache_dir=cache_dir)
    today = datetime.now(UTC).date().isoformat()
    where = f"site {site}: {folder.name}, {today}"
    manifest = package.manifest.model_dump()
    results: dict[str, SiteFindingResult] = {}
    for k, code in enumerate(codes):
        column = labels[:, k]
        known = column != UNKNOWN_LABEL
        y = column[known].astype(np.bool_)
        logits = all_logits[known, package.finding_codes.index(code)]
        calibration = _refit(code, package.manifest.calibration[code], y, logits, where)
        probs = calibration.probability(logits)  # what serving computes, to the last bit
        point = choose_operating_point(y, probs, target_sensitivity)
        flagged = probs >= point.threshold
        tp, tn = int(flagged[y].sum()), int((~flagged[~y]).sum())
        n_pos, n_neg = int(y.sum()), int((~y).sum())
        results[code] = SiteFindingResult(
            positives=n_pos,
            negatives=n_neg,
            unknown=int((~known).sum()),
            threshold=point.threshold,
            sensitivity=tp / n_pos,
            sensitivity_ci_95=wilson_interval(tp, n_pos),
            specificity=tn / n_neg,
            specificity_ci_95=wilson_interval(tn, n_neg),
        )
        manifest["calibration"][code] = calibration.model_dump()
        manifest["operating_points"][code] = {
            "threshold": point.threshold,
            "target_sensitivity": float(target_sensitivity),
            "sensitivity": tp / n_pos,
            "specificity": tn / n_neg,
            "chosen_on": where,
        }
    record = SiteCalibration(
        site=site,
        date=today,
        previous_version=package.manifest.version,
        data=folder.name or str(folder),
        studies=len(examples),
        target_sensitivity=float(target_sensitivity),
        findings=results,
        kept=kept,
    )
    manifest["reference_distributions"] = site_reference(
        package, manifest, examples, all_logits, where, cache_dir
    ).model_dump()
    manifest["version"] = version or site_version(package.manifest.version, site)
    manifest["site_calibration"] = record.model_dump()
    manifest["created"] = datetime.now(UTC).isoformat(timespec="seconds")
    published = write_package(destination, package.path / MODEL_FILE, manifest)
    return CalibrationResult(published, record)
