"""Reduced-precision package variants, accepted only when accuracy is kept.

An INT8 graph runs faster on CPUs with integer dot-product instructions, but quantization can
move scores. A variant is therefore built from a verified fp32 package and published only if,
on held-out labelled studies, every finding's AUROC drops by at most `AUROC_DROP_LIMIT` and its
expected calibration error rises by at most `ECE_RISE_LIMIT` (both measured here, on the same
studies, by `compare_on_dataset`). The calibration and operating points are the fp32 package's:
the check is what makes keeping them honest.

Quantization is ONNX Runtime's static QDQ form (per-channel signed INT8 weights, unsigned INT8
activations), with activation ranges calibrated on training images preprocessed exactly as
serving preprocesses them. The first convolution stays in fp32: quantizing its input would
round the image itself to 256 grey levels, which is where a faint nodule's contrast lives. On
the bundled model that one layer is the difference between a 0.0105 and a 0.0028 nodule AUROC
drop, and costs little speed, since it has a single input channel (benchmarks/README.md).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from diagnostics.compare import Comparison, compare_on_dataset
from diagnostics.datasets import load_dataset
from diagnostics.datasets.records import Example
from diagnostics.errors import ModelPackageError
from diagnostics.package import INPUT_NAME, MODEL_FILE, ModelPackage, load_package, write_package
from diagnostics.preprocess import to_model_input
from diagnostics.train.data import preprocess_file

AUROC_DROP_LIMIT = 0.005
ECE_RISE_LIMIT = 0.01
CALIBRATION_IMAGES = 64
"""Training images whose activations set the INT8 ranges: enough for stable min/max ranges
of a small CNN, few enough to quantize in seconds."""


@dataclass(frozen=True)
class FindingCheck:
    """One finding's accuracy with the fp32 and the reduced graph on the same studies."""

    code: str
    auroc_fp32: float
    auroc_reduced: float
    ece_fp32: float
    ece_reduced: float

    @property
    def auroc_drop(self) -> float:
        return self.auroc_fp32 - self.auroc_reduced

    @property
    def ece_rise(self) -> float:
        return self.ece_reduced - self.ece_fp32

    @property
    def kept(self) -> bool:
        return self.auroc_drop <= AUROC_DROP_LIMIT and self.ece_rise <= ECE_RISE_LIMIT

    def as_dict(self) -> dict[str, float | bool]:
        return {
            "auroc_fp32": self.auroc_fp32,
            "auroc_reduced": self.auroc_reduced,
            "auroc_drop": self.auroc_drop,
            "ece_fp32": self.ece_fp32,
            "ece_reduced": self.ece_reduced,
            "ece_rise": self.ece_rise,
            "kept": self.kept,
        }


@dataclass(frozen=True)
class ReducedPackage:
    package: ModelPackage
    checks: tuple[FindingCheck, ...]
    data: str
    """Which held-out studies the check ran on."""

    @property
    def worst_auroc_drop(self) -> float:
        return max(c.auroc_drop for c in self.checks)


class _Images(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime has no type hints
    """Feeds preprocessed images one at a time to ONNX Runtime's range calibration."""

    def __init__(self, package: ModelPackage, examples: Sequence[Example]) -> None:
        self._package = package
        self._examples = iter(examples)

    def get_next(self) -> dict[str, np.ndarray] | None:
        example = next(self._examples, None)
        if example is None:
            return None
        spec = self._package.manifest.preprocessing
        image = to_model_input(preprocess_file(example.path, spec), spec).numpy()
        return {INPUT_NAME: image[np.newaxis].astype(np.float32)}


def quantize_int8(package: ModelPackage, calibration: Sequence[Example], out: Path) -> None:
    """Write `package`'s graph as a static QDQ INT8 graph at `out`."""
    if not calibration:
        raise ModelPackageError("INT8 quantization needs calibration images; none were given")
    with tempfile.TemporaryDirectory(prefix="quantize-") as work:
        prepared = Path(work) / "prepared.onnx"
        # Shape inference and graph clean-up first, as ONNX Runtime advises for static
        # quantization: ranges are then collected on the optimised graph that gets quantized.
        quant_pre_process(str(package.path / MODEL_FILE), str(prepared), skip_symbolic_shape=True)
        quantize_static(
            str(prepared),
            str(out),
            _Images(package, calibration),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            weight_type=QuantType.QInt8,
            activation_type=QuantType.QUInt8,
            nodes_to_exclude=_first_convolution(prepared),
        )


def _first_convolution(graph_path: Path) -> list[str]:
    """The name of the graph's first Conv (ONNX lists nodes in topological order): the layer
    that reads the image, kept in fp32."""
    graph = onnx.load(str(graph_path)).graph
    return next(([node.name] for node in graph.node if node.op_type == "Conv"), [])


@dataclass(frozen=True)
class Int8Candidate:
    """A quantized package, not yet accepted, and how it did against the fp32 one."""

    package: ModelPackage
    checks: tuple[FindingCheck, ...]
    comparison: Comparison

    @property
    def kept(self) -> bool:
        return all(c.kept for c in self.checks)


def int8_candidate(
    package: ModelPackage,
    work: Path,
    *,
    train_root: Path,
    test_root: Path,
    layout: str = "synth",
    options: Mapping[str, object] | None = None,
    threads: int | None = None,
) -> Int8Candidate:
    """Quantize `package` into `work/candidate` and measure it against `package` on the "test"
    split of `test_root`; activation ranges from the first `CALIBRATION_IMAGES` studies of the
    "train" split of `train_root`. Pass the held-out studies the fp32 package was evaluated on.
    """
    codes = package.finding_codes
    extra = dict(options or {})
    calibration = load_dataset(layout, train_root, codes, split="train", **extra)
    calibration = calibration[:CALIBRATION_IMAGES]
    graph = work / MODEL_FILE
    quantize_int8(package, calibration, graph)
    fields = package.manifest.model_dump(mode="json")
    fields.update(version=_variant_version(package.manifest.version), precision="int8")
    candidate = write_package(work / "candidate", graph, fields)
    comparison = compare_on_dataset(
        candidate, package, test_root, layout=layout, split="test", options=extra, threads=threads
    )
    return Int8Candidate(candidate, tuple(_checks(comparison)), comparison)


def reduced_precision_package(
    package: ModelPackage,
    out: Path,
    *,
    train_root: Path,
    test_root: Path,
    layout: str = "synth",
    options: Mapping[str, object] | None = None,
    threads: int | None = None,
) -> ReducedPackage:
    """Build an INT8 variant of `package` at `out` (see `int8_candidate` for the data), or raise
    `ModelPackageError` naming every finding whose accuracy it would not keep (and write
    nothing)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.", dir=out.parent) as work:
        candidate = int8_candidate(
            package,
            Path(work),
            train_root=train_root,
            test_root=test_root,
            layout=layout,
            options=options,
            threads=threads,
        )
        if not candidate.kept:
            raise ModelPackageError(_refusal([c for c in candidate.checks if not c.kept]))
        comparison = candidate.comparison
        fields = candidate.package.manifest.model_dump(mode="json")
        fields["metrics"] = {
            **package.manifest.metrics,
            "precision_check": {
                "data": comparison.data,
                "studies": comparison.studies,
                "auroc_drop_limit": AUROC_DROP_LIMIT,
                "ece_rise_limit": ECE_RISE_LIMIT,
                "findings": {c.code: c.as_dict() for c in candidate.checks},
            },
        }
        published = write_package(out, candidate.package.onnx_path, fields)
    return ReducedPackage(load_package(published.path), candidate.checks, comparison.data)


def _variant_version(version: str) -> str:
    """`1.2.0` → `1.2.0+int8` (semver build metadata: the same release, another build)."""
    base, _, build = version.partition("+")
    return f"{base}+{build + '.' if build else ''}int8"


def _checks(comparison: Comparison) -> list[FindingCheck]:
    return [
        FindingCheck(
            code=f.code,
            auroc_fp32=f.current.auroc,
            auroc_reduced=f.candidate.auroc,
            ece_fp32=f.current.ece,
            ece_reduced=f.candidate.ece,
        )
        for f in comparison.findings
    ]


def _refusal(refused: Sequence[FindingCheck]) -> str:
    parts = [
        f"{c.code}: AUROC {c.auroc_fp32:.4f} -> {c.auroc_reduced:.4f} "
        f"(drop {c.auroc_drop:.4f}, limit {AUROC_DROP_LIMIT}), ECE {c.ece_fp32:.4f} -> "
        f"{c.ece_reduced:.4f} (rise {c.ece_rise:.4f}, limit {ECE_RISE_LIMIT})"
        for c in refused
    ]
    return (
        "the INT8 variant does not keep accuracy on the held-out studies, so it was not "
        f"written; keep serving the fp32 package. {'; '.join(parts)}"
    )
