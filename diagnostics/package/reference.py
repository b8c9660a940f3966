"""Reference distributions: what the model's scores looked like on the data it was calibrated on.

Drift is judged by comparing recent studies with this reference, so it is recorded in the model
package at export and calibration time (`Manifest.reference_distributions`): per finding a
histogram of calibrated probabilities, and a histogram of appearance scores, all over fixed bin
edges, so a service and a package agree on the bins without sharing any code but this module.
The population stability index (`psi`) is the comparison; it is here, beside the histograms,
so the CLI, the metrics and the admin page compute it one way.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

from diagnostics.strict import StrictModel

PROBABILITY_EDGES: tuple[float, ...] = tuple(round(k / 10, 1) for k in range(11))
"""Ten equal bins of calibrated probability, [0, 0.1) ... [0.9, 1.0]."""
APPEARANCE_EDGES: tuple[float, ...] = (
    *(round(k / 10, 1) for k in range(11)),
    1.25,
    1.5,
    2.0,
    3.0,
)
"""Appearance scores: ten bins up to the refusal limit 1.0, then four for refused images (a
score past the last edge is counted in the last bin)."""
Count = Annotated[int, Field(ge=0)]

PSI_FLOOR = 1e-4
"""A bin's share is at least this in the PSI, so an empty bin gives a large, finite term."""
PSI_THRESHOLD = 0.2
"""The usual rule: below 0.1 stable, 0.1-0.2 worth a look, above 0.2 a shift."""


def histogram(values: Iterable[float], edges: Sequence[float]) -> list[int]:
    """Counts of `values` in the bins between `edges` (the last bin includes its right edge;
    values outside are counted in the first or last bin, so nothing is dropped)."""
    data = np.clip(np.asarray(list(values), dtype=np.float64), edges[0], edges[-1])
    counts, _ = np.histogram(data, bins=np.asarray(edges, dtype=np.float64))
    return [int(c) for c in counts]


def psi(expected: Sequence[float], actual: Sequence[float], floor: float = PSI_FLOOR) -> float:
    """Population stability index of `actual` counts against `expected` counts, same bins:
    sum over bins of (a - e) * ln(a / e), with a and e each bin's share (at least `floor`)."""
    if len(expected) != len(actual) or not expected:
        raise ValueError(f"need counts over the same bins, got {len(expected)} and {len(actual)}")
    e_total, a_total = float(sum(expected)), float(sum(actual))
    if e_total <= 0 or a_total <= 0:
        raise ValueError("both distributions need at least one value")
    total = 0.0
    for e_count, a_count in zip(expected, actual, strict=True):
        e = max(e_count / e_total, floor)
        a = max(a_count / a_total, floor)
        total += (a - e) * math.log(a / e)
    return total


def _check_edges(edges: Sequence[float], what: str) -> None:
    if len(edges) < 3 or any(b <= a for a, b in itertools.pairwise(edges)):
        raise ValueError(f"{what} must be at least 3 increasing values")
    if not all(math.isfinite(e) for e in edges):
        raise ValueError(f"{what} must be finite")


def _check_counts(counts: Sequence[int], edges: Sequence[float], what: str) -> None:
    if len(counts) != len(edges) - 1:
        raise ValueError(f"{what}: {len(counts)} counts for {len(edges) - 1} bins")
    if sum(counts) < 1:
        raise ValueError(f"{what}: no values counted")


class ReferenceDistributions(StrictModel):
    """Histograms of the calibration data's scores (manifest block `reference_distributions`)."""

    data: str = Field(min_length=1)
    """What the histograms were counted on, e.g. "validation split of train (by patient)"."""
    studies: int = Field(ge=1)
    probability_edges: list[float]
    findings: dict[str, list[Count]] = Field(default_factory=dict)
    """Per finding code, counts of calibrated probabilities per bin (one per study)."""
    appearance_edges: list[float] | None = None
    appearance: list[Count] | None = None
    """Counts of appearance scores per bin (one per image); absent without an appearance check."""

    @model_validator(mode="after")
    def _check_bins(self) -> ReferenceDistributions:
        _check_edges(self.probability_edges, "probability_edges")
        if self.probability_edges[0] < 0.0 or self.probability_edges[-1] > 1.0:
            raise ValueError("probability_edges must lie within [0, 1]")
        for code, counts in self.findings.items():
            _check_counts(counts, self.probability_edges, f"findings.{code}")
        if (self.appearance_edges is None) != (self.appearance is None):
            raise ValueError("appearance and appearance_edges come together")
        if self.appearance_edges is not None and self.appearance is not None:
            _check_edges(self.appearance_edges, "appearance_edges")
            _check_counts(self.appearance, self.appearance_edges, "appearance")
        return self


def reference_from(
    probabilities: Mapping[str, Iterable[float]],
    appearance: Iterable[float] | None,
    *,
    data: str,
    studies: int,
) -> ReferenceDistributions:
    """The block for a package, from calibrated probabilities per finding (one per study) and
    appearance scores (one per image, None without an appearance profile)."""
    scores = None if appearance is None else list(appearance)
    return ReferenceDistributions(
        data=data,
        studies=studies,
        probability_edges=list(PROBABILITY_EDGES),
        findings={code: histogram(p, PROBABILITY_EDGES) for code, p in probabilities.items()},
        appearance_edges=list(APPEARANCE_EDGES) if scores else None,
        appearance=histogram(scores, APPEARANCE_EDGES) if scores else None,
    )
