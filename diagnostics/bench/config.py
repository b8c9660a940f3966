"""What `diagnostics bench` measures and for how long, and the goals its ratios are held to."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless

from diagnostics.constants import BUNDLED_MODEL
from diagnostics.errors import ConfigurationError

BATCHES = (1, 8)
OUTPUTS = ["logits", "cam"]
GOALS: dict[str, float] = {
    "pipeline_vs_model_uncompressed": 0.8,
    "pipeline_vs_model_jpeg2000": 0.5,
    "engine_vs_openvino_fp32": 1.0,
    "reduced_precision_vs_fp32": 1.5,
}
"""Each goal is met when the measured ratio is at least this value. `ort_vs_eager_*` and
`densenet121_share_of_matmul_peak` are reported as information: eager PyTorch with
channels_last matches ONNX Runtime at batch 8, and Winograd convolutions do less work than the
FLOP count assumes, so neither measures what it was meant to (issue #17)."""
GOALS_AT_MOST: dict[str, float] = {"reduced_precision_auroc_drop": 0.005}
"""Each goal is met when the measured value is at most this."""
PIPELINE_SYNTAXES: dict[str, UID] = {
    "uncompressed": ExplicitVRLittleEndian,
    "jpeg2000": JPEG2000Lossless,
}
BUSY_LOAD = 0.5
"""A 1-minute load average above this at the start means something else is running."""

Report = dict[str, Any]
Runner = Callable[[], object]


def goal_table(
    ratios: dict[str, float], at_least: dict[str, float], at_most: dict[str, float]
) -> Report:
    """The report's `goals` object: each goal, the measured value and whether it is met."""
    goals: Report = {
        name: {"goal": goal, "value": ratios[name], "met": ratios[name] >= goal}
        for name, goal in at_least.items()
    }
    goals.update(
        {
            name: {"goal_at_most": limit, "value": ratios[name], "met": ratios[name] <= limit}
            for name, limit in at_most.items()
        }
    )
    return goals


def run_warnings(load: float | None, quick: bool) -> list[str]:
    """Why a run's numbers may mislead: a busy machine at the start, or a --quick run."""
    warnings = []
    if load is not None and load > BUSY_LOAD:
        warnings.append(
            f"the 1-minute load average was {load:.2f} at the start: another process was "
            "using the CPU, so these timings are distorted"
        )
    if quick:
        warnings.append("--quick run: tiny sizes and few rounds; the numbers are not meaningful")
    return warnings


def goal_lines(report: Report) -> list[str]:
    """The summary's closing lines: each goal met or not, then the run's warnings."""
    lines = []
    for name, goal in report["goals"].items():
        mark = "met" if goal["met"] else "NOT met"
        bound = f">= {goal['goal']}" if "goal" in goal else f"<= {goal['goal_at_most']}"
        lines.append(f"goal {name} {bound}: {goal['value']:.3g} ({mark})")
    lines.extend(f"warning: {text}" for text in report["warnings"])
    return lines


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and for how long; the defaults are the full run (a few minutes)."""

    model: Path = BUNDLED_MODEL
    iterations: int = 10
    """Timed rounds per measurement (fewer if `max_seconds` runs out after `min_rounds`)."""
    warmup: int = 2
    min_rounds: int = 3
    max_seconds: float = 20.0
    densenet_size: int = 224
    matmul_size: int = 2048
    matmul_repeats: int = 5
    pipeline_studies: int = 32
    pipeline_rounds: int = 3
    study_size: int = 512
    """Rows and columns of the synthetic radiographs: the bundled model's training data."""
    study_spacing_mm: float = 0.8
    precision_train_studies: int = 32
    """Synthetic studies whose activations calibrate the INT8 ranges."""
    precision_test_studies: int = 200
    """Held-out synthetic studies for the INT8 accuracy check."""
    threads: int | None = None
    """Intra-op threads for PyTorch and ONNX Runtime; None: every core this process may use."""
    seed: int = 2024
    quick: bool = False

    def __post_init__(self) -> None:
        for name in (
            "iterations",
            "min_rounds",
            "matmul_size",
            "matmul_repeats",
            "pipeline_studies",
            "pipeline_rounds",
            "precision_train_studies",
            "precision_test_studies",
        ):
            if getattr(self, name) < 1:
                raise ConfigurationError(f"bench {name} must be at least 1")
        if self.densenet_size < 32:
            raise ConfigurationError("bench densenet_size must be at least 32 (output stride)")
        if self.warmup < 0 or self.max_seconds <= 0:
            raise ConfigurationError("bench warmup must be >= 0 and max_seconds positive")
        if self.threads is not None and self.threads < 1:
            raise ConfigurationError(f"bench threads must be at least 1, not {self.threads}")

    @classmethod
    def quick_run(cls, model: Path) -> BenchConfig:
        """A run of seconds that exercises every measurement; its numbers are not meaningful."""
        return cls(
            model=model,
            iterations=2,
            warmup=1,
            min_rounds=1,
            max_seconds=3.0,
            densenet_size=64,
            matmul_size=1024,
            matmul_repeats=3,
            pipeline_studies=4,
            pipeline_rounds=1,
            precision_train_studies=4,
            precision_test_studies=12,
            quick=True,
        )
