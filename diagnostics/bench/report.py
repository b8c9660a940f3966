"""One `diagnostics bench` run: every measurement in one process, the JSON-ready report, and
the few lines a person reads."""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable
from datetime import UTC, datetime

import numpy as np
import onnxruntime as ort
import openvino
import torch

import diagnostics
from diagnostics.bench.config import (
    BATCHES,
    GOALS,
    GOALS_AT_MOST,
    PIPELINE_SYNTAXES,
    BenchConfig,
    Report,
    goal_lines,
    goal_table,
    run_warnings,
)
from diagnostics.bench.models import bench_bundled, bench_densenet, matmul_peak
from diagnostics.bench.pipeline import bench_pipeline
from diagnostics.bench.runtimes import bench_engines, bench_int8
from diagnostics.bench.timing import cpu_model, load_average, peak_rss_mib
from diagnostics.package import load_package
from diagnostics.screening.engine import OnnxEngine, default_threads

log = logging.getLogger(__name__)


def _ratios(
    models: Report, pipeline: Report, peak: Report, runtimes: Report, int8: Report
) -> dict[str, float]:
    bundled, densenet = models["bundled"], models["densenet121"]
    ratios: dict[str, float] = {
        "ort_vs_eager_batch1": bundled["batch_1"]["ort_vs_eager"],
        "ort_vs_eager_batch8": bundled["batch_8"]["ort_vs_eager"],
        "densenet121_ort_vs_eager_batch8": densenet["batch_8"]["ort_vs_eager"],
        "densenet121_share_of_matmul_peak": densenet["batch_8"]["ort_gflops"] / peak["peak_gflops"],
    }
    for label in PIPELINE_SYNTAXES:
        ratios[f"pipeline_vs_model_{label}"] = pipeline[label]["vs_model"]
    ratios["engine_vs_openvino_fp32"] = runtimes["ours_vs_openvino_fp32"]
    ratios["reduced_precision_vs_fp32"] = int8["int8_vs_fp32"]
    ratios["reduced_precision_auroc_drop"] = int8["worst_auroc_drop"]
    return ratios


def run_bench(config: BenchConfig) -> Report:
    """Every measurement, in one process; returns the JSON-ready report."""
    began = time.perf_counter()
    load_start = load_average()
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
        runtimes = section("runtimes", lambda: bench_engines(package, threads, config))
        int8 = section("int8", lambda: bench_int8(package, threads, config))
        torch_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(previous_threads)
    options = engine.session.get_session_options()
    environment = {
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": default_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "diagnostics": diagnostics.__version__,
        "torch": torch.__version__,
        "onnxruntime": ort.__version__,
        "openvino": openvino.__version__,
        "numpy": np.__version__,
        "torch_threads": torch_threads,
        "ort_intra_op_threads": options.intra_op_num_threads,
        "ort_inter_op_threads": options.inter_op_num_threads,
        "ort_providers": list(engine.providers),
        "load_average_1min_start": load_start,
        "load_average_1min_end": load_average(),
    }
    ratios = _ratios(models, pipeline, peak, runtimes, int8)
    goals = goal_table(ratios, GOALS, GOALS_AT_MOST)
    warnings = run_warnings(load_start, config.quick)
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
        "runtimes": runtimes,
        "int8": int8,
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
    runtimes, int8 = report["runtimes"], report["int8"]
    lines.append(
        f"runtimes (batch {runtimes['batch']}): ONNX Runtime "
        f"{fmt(runtimes['onnxruntime_images_per_s'])} img/s, OpenVINO fp32 "
        f"{fmt(runtimes['openvino_fp32_images_per_s'])} img/s; auto chose {runtimes['chosen']}"
    )
    lines.append(
        f"int8 (batch {int8['batch']}): {fmt(int8['int8_vs_fp32'])}x fp32, worst AUROC drop "
        f"{int8['worst_auroc_drop']:.4f} on {int8['test_studies']} studies "
        f"({'accepted' if int8['accepted'] else 'refused'})"
    )
    return lines + goal_lines(report)
