"""The pipeline around the model: DICOM bytes -> StudyResult images/s beside model-only
images/s, on synthetic studies written in each transfer syntax."""

from __future__ import annotations

import dataclasses
import io
import statistics

import torch

from diagnostics.bench.config import PIPELINE_SYNTAXES, BenchConfig, Report, Runner
from diagnostics.bench.timing import time_interleaved
from diagnostics.package import ModelPackage
from diagnostics.screening import ScreenBatch, Screener
from diagnostics.screening.engine import OnnxEngine


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
