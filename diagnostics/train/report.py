"""What training says to the person running it: per-epoch lines, the final table, and refusals.

A run that only shows numbers with `-v` invites shipping a model nobody looked at. Every epoch
prints one line (losses, per-finding validation AUROC, time, best so far), the end prints a
table per finding, and a finding the data cannot support (too few positives) or the model did
not learn (validation AUROC near chance) stops the export with a message naming the finding and
what to do, unless the run was told `--allow-weak`, which the model card then records.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from diagnostics.errors import WeakFindingError

MIN_POSITIVES = 10
"""Fewer positive studies than this in training or validation cannot train nor check a finding."""
MIN_AUROC = 0.6
"""Below this validation AUROC a finding is refused even if its interval excludes chance."""


def epoch_line(
    record: Mapping[str, float],
    findings: Sequence[str],
    epochs: int,
    best_epoch: int,
    best_auroc: float,
) -> str:
    """`epoch 3/8  train loss 0.61  val loss 0.58  val AUROC nodule 0.71 ...  12.3 s  best ...`"""
    epoch = int(record["epoch"]) + 1
    parts = [f"epoch {epoch}/{epochs}", f"train loss {record['loss']:.4f}"]
    if "val_loss" in record:
        parts.append(f"val loss {record['val_loss']:.4f}")
    aurocs = [f"{c} {record[f'val_auroc_{c}']:.3f}" for c in findings if f"val_auroc_{c}" in record]
    parts.append("val AUROC " + (" ".join(aurocs) if aurocs else f"{record['val_auroc']:.3f}"))
    if "seconds" in record:
        parts.append(f"{record['seconds']:.1f} s")
    parts.append(f"best {best_auroc:.3f} (epoch {best_epoch + 1})")
    return "  ".join(parts)


def summary_table(
    metrics: Mapping[str, Any],
    methods: Mapping[str, str],
    evaluated_on: str,
) -> str:
    """One row per finding: AUROC [95 % CI], sensitivity/specificity at the operating point,
    calibration method and ECE, on the held-out test set (or validation without one)."""
    header = (
        f"{'finding':<16}{'AUROC':>7}  {'95% CI':<13}{'sens':>6}{'spec':>7}  "
        f"{'calibration':<22}{'ECE':>6}"
    )
    lines = [f"results on {evaluated_on}:", header]
    for code, method in methods.items():
        m = metrics[code]
        low, high = m["auroc_ci_95"]
        lines.append(
            f"{code:<16}{m['auroc']:>7.3f}  {low:.3f}-{high:<7.3f}{m.get('sensitivity', 0.0):>6.2f}"
            f"{m.get('specificity', 0.0):>7.2f}  {method:<22}{m['ece']:>6.3f}"
        )
    return "\n".join(lines)


def scarce_findings(
    labels: Mapping[str, np.ndarray], codes: Sequence[str], minimum: int = MIN_POSITIVES
) -> list[str]:
    """One problem per finding with fewer than `minimum` positives in a split ({split: [N, K]})."""
    problems = []
    for k, code in enumerate(codes):
        counts = {split: int((array[:, k] == 1).sum()) for split, array in labels.items()}
        short = [f"{n} in {split}" for split, n in counts.items() if n < minimum]
        if short:
            problems.append(
                f"finding {code!r} has too few positive studies ({', '.join(short)}; at least "
                f"{minimum} in each are needed): add positive studies, or drop {code!r} from the "
                "recipe's findings"
            )
    return problems


def weak_findings(
    metrics: Mapping[str, Any], codes: Sequence[str], minimum: float = MIN_AUROC
) -> list[str]:
    """One problem per finding no better than chance on validation (CI holds 0.5, or AUROC low)."""
    problems = []
    for code in codes:
        m = metrics[code]
        low, high = m["auroc_ci_95"]
        if low <= 0.5 or m["auroc"] < minimum:
            problems.append(
                f"finding {code!r} is no better than chance on validation (AUROC {m['auroc']:.3f}, "
                f"95% CI {low:.3f}-{high:.3f}, {m['n_positive']} positives; needs AUROC >= "
                f"{minimum} with the CI above 0.5): train longer (more epochs), add positive "
                f"studies, or drop {code!r} from the recipe's findings"
            )
    return problems


def refuse_or_note(problems: Sequence[str], allow_weak: bool) -> list[str]:
    """Raise `WeakFindingError` with every problem, or return them as model card notes."""
    if not problems:
        return []
    if not allow_weak:
        raise WeakFindingError(
            "export refused: "
            + "; ".join(problems)
            + ". --allow-weak exports anyway and says so in the model card"
        )
    return [f"Exported with --allow-weak although {p.split(':')[0]}." for p in problems]
