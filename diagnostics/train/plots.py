"""ROC and reliability plots for evaluation reports and notebooks.

Built on `matplotlib.figure.Figure` directly, never pyplot: no backend is selected, no global figure
registry is touched, so importing this module or calling it from a server thread has no side
effects. PNGs are rendered with the Agg canvas; notebooks display the returned `Figure` inline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from diagnostics.train.metrics import ReliabilityBin

Curve = tuple[npt.ArrayLike, npt.ArrayLike, float]  # (fpr, tpr, auroc)

_DPI = 120


def _new_figure(size: tuple[float, float]) -> Figure:
    figure = Figure(figsize=size, dpi=_DPI, layout="constrained")
    FigureCanvasAgg(figure)  # attaches itself: savefig renders with Agg whatever the backend
    return figure


def _save(figure: Figure, path: str | Path) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(target, format="png")
    return target


def roc_figure(curves: Mapping[str, Curve], title: str = "ROC") -> Figure:
    """One ROC curve per finding, labelled with its AUROC, over the chance diagonal."""
    figure = _new_figure((5.0, 5.0))
    axes = figure.add_subplot()
    axes.plot([0.0, 1.0], [0.0, 1.0], linestyle=":", color="grey", label="chance")
    for code, (fpr, tpr, area) in curves.items():
        axes.plot(np.asarray(fpr), np.asarray(tpr), label=f"{code} ({area:.3f})")
    axes.set(xlim=(0.0, 1.0), ylim=(0.0, 1.0), aspect="equal", title=title)
    axes.set_xlabel("1 - specificity (false positive rate)")
    axes.set_ylabel("sensitivity (true positive rate)")
    axes.legend(loc="lower right", title="finding (AUROC)")
    return figure


def reliability_figure(
    bins_by_code: Mapping[str, Sequence[ReliabilityBin]], title: str = "Reliability"
) -> Figure:
    """Observed frequency against mean predicted probability per bin (top) and how many cases
    each bin holds (bottom), since a gap in a bin of five cases means little."""
    figure = _new_figure((5.0, 6.5))
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(3.0, 1.0))
    top.plot([0.0, 1.0], [0.0, 1.0], linestyle=":", color="grey", label="perfectly calibrated")
    for code, table in bins_by_code.items():
        mean_prob = [b.mean_prob for b in table]
        line = top.plot(mean_prob, [b.frac_pos for b in table], marker="o", label=code)[0]
        bottom.plot(mean_prob, [b.n_cases for b in table], marker=".", color=line.get_color())
    top.set(xlim=(0.0, 1.0), ylim=(0.0, 1.0), title=title, ylabel="fraction positive")
    top.legend(loc="upper left")
    bottom.set(xlabel="mean predicted probability", ylabel="cases", yscale="log")
    return figure


def plot_roc(curves: Mapping[str, Curve], path: str | Path, title: str = "ROC") -> Path:
    """Write `roc_figure(curves)` as a PNG at `path`; returns the path."""
    return _save(roc_figure(curves, title), path)


def plot_reliability(
    bins_by_code: Mapping[str, Sequence[ReliabilityBin]],
    path: str | Path,
    title: str = "Reliability",
) -> Path:
    """Write `reliability_figure(bins_by_code)` as a PNG at `path`; returns the path."""
    return _save(reliability_figure(bins_by_code, title), path)
