"""Runtime and precision measurements: our engine against OpenVINO fp32, and an INT8 variant
against fp32, each on the same inputs in interleaved rounds.

- `engine_vs_openvino_fp32`: images/s of the engine `auto` chooses for the bundled package
  (ONNX Runtime or OpenVINO, after the parity check) over OpenVINO fp32's, at batch 8.
- `reduced_precision_vs_fp32`: images/s of the bundled package's INT8 variant over the fp32
  package's, both in ONNX Runtime at batch 8; `reduced_precision_auroc_drop`: the largest
  per-finding AUROC drop of that variant on held-out synthetic studies (the acceptance check of
  `diagnostics.precision`, whose limit is 0.005).
"""

from __future__ import annotations

import statistics
import tempfile
from functools import partial
from pathlib import Path

import numpy as np

from diagnostics import precision
from diagnostics.bench.config import BenchConfig, Report
from diagnostics.bench.timing import time_interleaved
from diagnostics.package import ModelPackage
from diagnostics.screening.engine import Engine, OnnxEngine
from diagnostics.screening.engines import open_engine, probe_batch
from diagnostics.screening.openvino_engine import OpenVinoEngine
from diagnostics.synth import SynthConfig, generate

BATCH = 8


def _rates(engines: dict[str, Engine], images: np.ndarray, config: BenchConfig) -> Report:
    times = time_interleaved(
        {name: partial(engine.run, images) for name, engine in engines.items()},
        warmup=config.warmup,
        rounds=config.iterations,
        min_rounds=config.min_rounds,
        max_seconds=config.max_seconds,
    )
    return {name: len(images) / statistics.median(values) for name, values in times.items()}


def bench_engines(package: ModelPackage, threads: int, config: BenchConfig) -> Report:
    """ONNX Runtime against OpenVINO fp32 on the bundled package; "ours" is the rate of the one
    `auto` picks (its own warm-up, then the same interleaved measurement as the other)."""
    chosen = open_engine(package, "auto", threads=threads)
    engines: dict[str, Engine] = {
        "onnxruntime": OnnxEngine(package, threads=threads, providers=["CPUExecutionProvider"]),
        "openvino_fp32": OpenVinoEngine(package, threads=threads),
    }
    rates = _rates(engines, probe_batch(package, n=BATCH, seed=config.seed), config)
    ours = "openvino_fp32" if isinstance(chosen, OpenVinoEngine) else "onnxruntime"
    return {
        "batch": BATCH,
        "chosen": type(chosen).__name__,
        **{f"{name}_images_per_s": rate for name, rate in rates.items()},
        "ours_images_per_s": rates[ours],
        "ours_vs_openvino_fp32": rates[ours] / rates["openvino_fp32"],
        "onnxruntime_vs_openvino_fp32": rates["onnxruntime"] / rates["openvino_fp32"],
    }


def bench_int8(package: ModelPackage, threads: int, config: BenchConfig) -> Report:
    """Quantize the bundled package, check it on held-out synthetic studies, time both."""
    size = config.study_size
    synth = SynthConfig(rows=size, columns=size, spacing_mm=config.study_spacing_mm)
    with tempfile.TemporaryDirectory(prefix="diagnostics-bench-int8-") as tmp:
        root = Path(tmp)
        generate(root / "train", config.precision_train_studies, config.seed, synth)
        generate(root / "test", config.precision_test_studies, config.seed + 1, synth)
        (root / "work").mkdir()
        candidate = precision.int8_candidate(
            package,
            root / "work",
            train_root=root / "train",
            test_root=root / "test",
            threads=threads,
        )
        engines: dict[str, Engine] = {
            "fp32": OnnxEngine(package, threads=threads, providers=["CPUExecutionProvider"]),
            "int8": OnnxEngine(
                candidate.package, threads=threads, providers=["CPUExecutionProvider"]
            ),
        }
        rates = _rates(engines, probe_batch(package, n=BATCH, seed=config.seed), config)
    drops = {c.code: c.auroc_drop for c in candidate.checks}
    return {
        "batch": BATCH,
        "train_studies": config.precision_train_studies,
        "test_studies": config.precision_test_studies,
        "fp32_images_per_s": rates["fp32"],
        "int8_images_per_s": rates["int8"],
        "int8_vs_fp32": rates["int8"] / rates["fp32"],
        "auroc_drop": drops,
        "worst_auroc_drop": max(drops.values()),
        "ece_rise": {c.code: c.ece_rise for c in candidate.checks},
        "accepted": candidate.kept,
        "auroc_drop_limit": precision.AUROC_DROP_LIMIT,
    }
