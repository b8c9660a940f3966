"""`diagnostics bench`: how fast screening runs on this machine, measured in one process, one run.

Three questions, each answered by a ratio of two numbers taken in the same run on the same
machine state (absolute images/s mean little across machines; ratios travel):

- Is ONNX Runtime worth it? ORT vs PyTorch eager on the bundled model (goal: 1.8x at batch 8).
- Is ORT using the CPU well? A DenseNet-121's achieved GFLOP/s as a share of a matrix-multiply
  peak measured beside it (goal: 0.80).
- Does the pipeline around the model cost much? DICOM bytes -> StudyResult images/s as a share
  of model-only images/s (goal: 0.7 on uncompressed input).

Competing measurements are interleaved round by round, so drift in machine load (another job
starting, thermal limits) affects them alike. Library code rather than a script, so that the
CLI, `benchmarks/bench_screening.py` and the tests share one implementation.
"""

from __future__ import annotations

import copy
import dataclasses
import io
import logging
import os
import platform
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import torch
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless
from torch.utils.flop_counter import FlopCounterMode

import diagnostics
from diagnostics.errors import ConfigurationError
from diagnostics.nets import CamNet, build_model
from diagnostics.package import ModelPackage, load_package
from diagnostics.screening.engine import OnnxEngine, default_threads
from diagnostics.screening.pipeline import ScreenBatch, Screener
from diagnostics.train.onnx_export import export_checked

log = logging.getLogger(__name__)

BATCHES = (1, 8)
OUTPUTS = ["logits", "cam"]
GOALS: dict[str, float] = {
    "ort_vs_eager_batch8": 1.8,
    "densenet121_share_of_matmul_peak": 0.80,
    "pipeline_vs_model_uncompressed": 0.7,
}
"""Each goal is met when the measured ratio is at least this value."""
PIPELINE_SYNTAXES: dict[str, UID] = {
    "uncompressed": ExplicitVRLittleEndian,
    "jpeg2000": JPEG2000Lossless,
}
BUSY_LOAD = 0.5
"""A 1-minute load average above this at the start means something else is running."""

Report = dict[str, Any]
Runner = Callable[[], object]


@dataclass(frozen=True)
class BenchConfig:
    """What to measure and for how long; the defaults are the full run (a few minutes)."""

    model: Path = Path("models/cxr-demo")
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
            quick=True,
        )


def time_interleaved(
    runners: Mapping[str, Runner], *, warmup: int, rounds: int, min_rounds: int, max_seconds: float
) -> dict[str, list[float]]:
    """Seconds per call of each runner: all warm up, then one call each per round, rotating
    the order; stops after `rounds`, or earlier once `max_seconds` passed and `min_rounds` ran."""
    names = list(runners)
    for name in names:
        for _ in range(warmup):
            runners[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    start = time.perf_counter()
    for done in range(rounds):
        if done >= min_rounds and time.perf_counter() - start > max_seconds:
            break
        for name in names[done % len(names) :] + names[: done % len(names)]:
            began = time.perf_counter()
            runners[name]()
            times[name].append(time.perf_counter() - began)
    return times


def count_flops(model: CamNet, shape: tuple[int, int, int]) -> int:
    """FLOPs of one image's forward pass (logits and CAM): convolutions and matrix products,
    a multiply-add counted as 2; elementwise work (normalisation, activations) is not counted."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model.forward_with_cam(torch.zeros(1, *shape))
    return int(counter.get_total_flops())


def peak_rss_mib() -> float:
    """The process's peak resident memory so far (ru_maxrss is KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - platforms without getloadavg
        return None


def matmul_peak(config: BenchConfig) -> Report:
    """Best-of-N float32 square matrix multiply, PyTorch and NumPy; the higher is the peak."""
    n = config.matmul_size
    generator = torch.Generator().manual_seed(config.seed)
    a, b = torch.rand(n, n, generator=generator), torch.rand(n, n, generator=generator)
    a_np, b_np = a.numpy(), b.numpy()
    flops = 2 * n**3
    result: Report = {"size": n, "dtype": "float32", "flops": flops, "statistic": "best"}
    for name, multiply in (("torch", lambda: torch.matmul(a, b)), ("numpy", lambda: a_np @ b_np)):
        multiply()
        best = min(_seconds(multiply) for _ in range(config.matmul_repeats))
        result[f"{name}_gflops"] = flops / best / 1e9
    result["repeats"] = config.matmul_repeats
    result["peak_gflops"] = max(result["torch_gflops"], result["numpy_gflops"])
    return result


def _seconds(call: Runner) -> float:
    began = time.perf_counter()
    call()
    return time.perf_counter() - began


def _batch_runners(
    model: CamNet, model_cl: CamNet, session: ort.InferenceSession, images: torch.Tensor
) -> dict[str, Runner]:
    """The same inputs for every runner: NCHW-contiguous for ORT, both layouts for eager."""
    array = images.numpy()
    images_cl = images.contiguous(memory_format=torch.channels_last)
    return {
        "ort": lambda: session.run(OUTPUTS, {"image": array}),
        "eager_contiguous": lambda: model.forward_with_cam(images),
        "eager_channels_last": lambda: model_cl.forward_with_cam(images_cl),
    }


def bench_model(
    model: CamNet, shape: tuple[int, int, int], session: ort.InferenceSession, config: BenchConfig
) -> Report:
    """ORT vs eager images/s at each batch size, and GFLOP/s from the counted FLOPs."""
    model = model.to(memory_format=torch.contiguous_format).eval()
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    flops = count_flops(model, shape)
    generator = torch.Generator().manual_seed(config.seed)
    report: Report = {"input": list(shape), "flops_per_image": flops}
    for batch in BATCHES:
        images = torch.rand(batch, *shape, generator=generator)
        with torch.inference_mode():
            times = time_interleaved(
                _batch_runners(model, model_cl, session, images),
                warmup=config.warmup,
                rounds=config.iterations,
                min_rounds=config.min_rounds,
                max_seconds=config.max_seconds,
            )
        rates = {name: batch / statistics.median(values) for name, values in times.items()}
        layout = max(("contiguous", "channels_last"), key=lambda name: rates[f"eager_{name}"])
        ort_rate, eager_rate = rates["ort"], rates[f"eager_{layout}"]
        report[f"batch_{batch}"] = {
            "batch": batch,
            "rounds": len(times["ort"]),
            "ort_images_per_s": ort_rate,
            "eager_contiguous_images_per_s": rates["eager_contiguous"],
            "eager_channels_last_images_per_s": rates["eager_channels_last"],
            "eager_images_per_s": eager_rate,
            "eager_memory_format": layout,
            "ort_vs_eager": ort_rate / eager_rate,
            "ort_gflops": flops * ort_rate / 1e9,
            "eager_gflops": flops * eager_rate / 1e9,
        }
    return report


def bench_bundled(package: ModelPackage, engine: OnnxEngine, config: BenchConfig) -> Report:
    manifest = package.manifest
    model = build_model(manifest.architecture, manifest.input.channels, len(manifest.findings))
    shape = (manifest.input.channels, manifest.input.height, manifest.input.width)
    return {
        "name": manifest.name,
        "version": manifest.version,
        "package": str(package.path),
        "architecture": manifest.architecture,
        "findings": len(manifest.findings),
        **bench_model(model, shape, engine.session, config),
    }


def bench_densenet(engine: OnnxEngine, config: BenchConfig) -> Report:
    """A registry DenseNet-121 (1 channel, 3 findings), exported with the project's checked
    export and run with the bundled engine's own session options and providers."""
    size = config.densenet_size
    shape = (1, size, size)
    model = build_model("densenet121", 1, 3)
    samples = torch.rand(2, *shape, generator=torch.Generator().manual_seed(config.seed))
    with tempfile.TemporaryDirectory(prefix="diagnostics-bench-") as tmp:
        path = Path(tmp) / "densenet121.onnx"
        began = time.perf_counter()
        export_checked(model, samples, path)
        export_s = time.perf_counter() - began
        session = ort.InferenceSession(
            str(path),
            sess_options=engine.session.get_session_options(),
            providers=list(engine.providers),
        )
        report = bench_model(model, shape, session, config)
    return {"architecture": "densenet121", "findings": 3, "export_s": export_s, **report}


def _study_sources(config: BenchConfig) -> dict[str, list[bytes]]:
    """Single-image synthetic studies as whole DICOM files in memory, one list per syntax
    (the same pixels and UIDs in each)."""
    from diagnostics.synth.dx import build_dx
    from diagnostics.synth.study import SynthConfig, make_study

    synth = SynthConfig(
        rows=config.study_size,
        columns=config.study_size,
        spacing_mm=config.study_spacing_mm,
        compressed_fraction=0.0,
    )
    sources: dict[str, list[bytes]] = {label: [] for label in PIPELINE_SYNTAXES}
    for index in range(config.pipeline_studies):
        _, pixels, patient, acquisition = make_study(config.seed, index, index, synth)
        for label, syntax in PIPELINE_SYNTAXES.items():
            buffer = io.BytesIO()
            acq = dataclasses.replace(acquisition, transfer_syntax=syntax)
            build_dx(pixels, patient, acq).save_as(buffer, enforce_file_format=True)
            sources[label].append(buffer.getvalue())
    return sources


def onnx_engine(screener: Screener) -> OnnxEngine:
    """The ONNX Runtime engine under a screener (unwrapping a micro-batcher)."""
    engine = screener.engine
    inner = getattr(engine, "engine", engine)
    assert isinstance(inner, OnnxEngine)
    return inner


def bench_pipeline(package: ModelPackage, threads: int, config: BenchConfig) -> Report:
    """DICOM bytes -> StudyResult images/s per input syntax, beside model-only images/s: the
    screener's own engine running as many images (`OnnxEngine.run`, chunked as the pipeline
    chunks them)."""
    screener = Screener.load(package, threads=threads)
    engine = screener.engine
    sources = _study_sources(config)
    count = config.pipeline_studies
    images = torch.rand(
        count, *engine.input_shape, generator=torch.Generator().manual_seed(config.seed)
    ).numpy()
    runners: dict[str, Runner] = {"model_only": lambda: engine.run(images)}
    batches: dict[str, list[ScreenBatch]] = {label: [] for label in sources}
    for label, files in sources.items():
        screener.screen(files[:2])  # warm: decoder and transform initialisation

        def screen(label: str = label, files: list[bytes] = files) -> None:
            batches[label].append(screener.screen(files))

        runners[label] = screen
    times = time_interleaved(
        runners,
        warmup=0,
        rounds=config.pipeline_rounds,
        min_rounds=1,
        max_seconds=config.max_seconds,
    )
    rates = {name: count / statistics.median(values) for name, values in times.items()}
    report: Report = {
        "studies": count,
        "images_per_study": 1,
        "image_size": [config.study_size, config.study_size],
        "rounds": len(times["model_only"]),
        "model_batch": min(engine.max_batch, count),
        "providers": list(onnx_engine(screener).providers),
        "model_only_images_per_s": rates["model_only"],
    }
    for label, files in sources.items():
        measured = batches[label]
        statuses = [outcome.result.status for outcome in measured[-1].outcomes]
        stages: dict[str, float] = {}
        for batch in measured:
            for stage, seconds in batch.stage_seconds.items():
                stages[stage] = stages.get(stage, 0.0) + seconds
        report[label] = {
            "images_per_s": rates[label],
            "vs_model": rates[label] / rates["model_only"],
            "mean_bytes": sum(map(len, files)) / len(files),
            "analyzed": statuses.count("analyzed"),
            "rejected": len(measured[-1].rejected),
            "stage_ms_per_image": {
                stage: 1000 * seconds / (count * len(measured))
                for stage, seconds in sorted(stages.items())
            },
        }
    return report


def _ratios(models: Report, pipeline: Report, peak: Report) -> dict[str, float]:
    bundled, densenet = models["bundled"], models["densenet121"]
    ratios: dict[str, float] = {
        "ort_vs_eager_batch1": bundled["batch_1"]["ort_vs_eager"],
        "ort_vs_eager_batch8": bundled["batch_8"]["ort_vs_eager"],
        "densenet121_ort_vs_eager_batch8": densenet["batch_8"]["ort_vs_eager"],
        "densenet121_share_of_matmul_peak": densenet["batch_8"]["ort_gflops"] / peak["peak_gflops"],
    }
    for label in PIPELINE_SYNTAXES:
        ratios[f"pipeline_vs_model_{label}"] = pipeline[label]["vs_model"]
    return ratios


def run_bench(config: BenchConfig) -> Report:
    """Every measurement, in one process; returns the JSON-ready report."""
    began = time.perf_counter()
    load_start = _load_average()
    package = load_package(config.model)
    threads = config.threads or default_threads()
    engine = OnnxEngine(package, threads=threads, providers=["CPUExecutionProvider"])
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    sections: dict[str, dict[str, float]] = {}

    def section(name: str, measure: Callable[[], Report]) -> Report:
        log.info("bench: %s", name)
        start = time.perf_counter()
        result = measure()
        sections[name] = {"seconds": time.perf_counter() - start, "peak_rss_mib": peak_rss_mib()}
        return result

    try:
        peak = section("matmul_peak", lambda: matmul_peak(config))
        models: Report = {
            "bundled": section("bundled", lambda: bench_bundled(package, engine, config)),
            "densenet121": section("densenet121", lambda: bench_densenet(engine, config)),
        }
        pipeline = section("pipeline", lambda: bench_pipeline(package, threads, config))
        torch_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
    options = engine.session.get_session_options()
    environment = {
        "cpu": _cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": default_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "diagnostics": diagnostics.__version__,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "numpy": np.__version__,
        "torch_threads": torch_threads,
        "ort_intra_op_threads": options.intra_op_num_threads,
        "ort_inter_op_threads": options.inter_op_num_threads,
        "ort_providers": list(engine.providers),
        "load_average_1min_start": load_start,
        "load_average_1min_end": _load_average(),
    }
    ratios = _ratios(models, pipeline, peak)
    goals = {
        name: {"goal": goal, "value": ratios[name], "met": ratios[name] >= goal}
        for name, goal in GOALS.items()
    }
    warnings = []
    if load_start is not None and load_start > BUSY_LOAD:
        warnings.append(
            f"the 1-minute load average was {load_start:.2f} at the start: another process "
            "was using the CPU, so these timings are distorted"
        )
    if config.quick:
        warnings.append("--quick run: tiny sizes and few rounds; the numbers are not meaningful")
    for label in PIPELINE_SYNTAXES:
        if pipeline[label]["analyzed"] != pipeline["studies"]:
            warnings.append(
                f"pipeline ({label}): only {pipeline[label]['analyzed']} of "
                f"{pipeline['studies']} studies were analysed; its throughput is not comparable"
            )
    return {
        "benchmark": "diagnostics bench",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": config.quick,
        "duration_s": time.perf_counter() - began,
        "method": {
            "statistic": "median seconds per call; images/s = images per call / median",
            "warmup_calls": config.warmup,
            "rounds": config.iterations,
            "min_rounds": config.min_rounds,
            "max_seconds_per_measurement": config.max_seconds,
            "interleaved": "competing runners alternate within each round, order rotating",
            "inputs": "uniform random [0, 1) float32, the same tensor for ORT and eager",
            "ort": "InferenceSession.run of logits and cam, CPU execution provider",
            "eager": "CamNet.forward_with_cam (logits and cam) in eval mode under "
            "torch.inference_mode, freshly initialised weights, NCHW-contiguous and "
            "channels_last both measured; the faster is the eager figure",
            "flops": "torch.utils.flop_counter.FlopCounterMode on the eager model at batch 1: "
            "convolutions and matrix products, a multiply-add counted as 2",
            "matmul_peak": "best of repeats, square float32 matmul with all threads, "
            "the higher of torch and numpy",
            "pipeline": "Screener.screen(list of whole DICOM files as bytes), one image per "
            "study; model-only is OnnxEngine.run on as many images",
        },
        "environment": environment,
        "matmul_peak": peak,
        "models": models,
        "pipeline": pipeline,
        "memory": {"peak_rss_mib": peak_rss_mib(), "measure": "getrusage ru_maxrss"},
        "sections": sections,
        "ratios": ratios,
        "goals": goals,
        "warnings": warnings,
    }


def summary_lines(report: Report) -> list[str]:
    """A few lines for a person; the JSON report has everything."""

    def fmt(value: float) -> str:
        return f"{value:.3g}"

    env, peak = report["environment"], report["matmul_peak"]
    lines = [
        f"{env['cpu']}: {env['usable_cpus']} cores, torch {env['torch']} "
        f"({env['torch_threads']} threads), onnxruntime {env['onnxruntime']} "
        f"({env['ort_intra_op_threads']} threads)",
        f"matmul peak ({peak['size']}^2 float32): {fmt(peak['peak_gflops'])} GFLOP/s",
    ]
    for key, model in report["models"].items():
        label = f"{key} ({model['architecture']}, {'x'.join(map(str, model['input']))}, "
        label += f"{fmt(model['flops_per_image'] / 1e9)} GFLOP/image)"
        lines.append(label)
        for batch in BATCHES:
            row = model[f"batch_{batch}"]
            lines.append(
                f"  batch {batch}: ORT {fmt(row['ort_images_per_s'])} img/s "
                f"({fmt(row['ort_gflops'])} GFLOP/s), eager {fmt(row['eager_images_per_s'])} "
                f"img/s ({row['eager_memory_format']}), ORT/eager {fmt(row['ort_vs_eager'])}"
            )
    pipeline = report["pipeline"]
    lines.append(
        f"pipeline ({pipeline['studies']} studies, batch {pipeline['model_batch']}): "
        f"model only {fmt(pipeline['model_only_images_per_s'])} img/s"
    )
    for label in PIPELINE_SYNTAXES:
        row = pipeline[label]
        lines.append(
            f"  {label}: {fmt(row['images_per_s'])} img/s, {fmt(row['vs_model'])} of "
            f"model only, {row['analyzed']}/{pipeline['studies']} analyzed"
        )
    lines.append(
        f"peak memory {report['memory']['peak_rss_mib']:.0f} MiB, "
        f"{report['duration_s']:.0f} s in all"
    )
    for name, goal in report["goals"].items():
        mark = "met" if goal["met"] else "NOT met"
        lines.append(f"goal {name} >= {goal['goal']}: {fmt(goal['value'])} ({mark})")
    lines.extend(f"warning: {text}" for text in report["warnings"])
    return lines
