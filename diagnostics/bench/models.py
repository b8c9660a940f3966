"""Model-only measurements: ONNX Runtime vs PyTorch eager on the bundled model and on a
DenseNet-121, their GFLOP/s from counted FLOPs, and the matrix-multiply peak beside them."""

from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import torch
from torch.utils.flop_counter import FlopCounterMode

from diagnostics.bench.config import BATCHES, OUTPUTS, BenchConfig, Report, Runner
from diagnostics.bench.timing import seconds, time_interleaved
from diagnostics.nets import CamNet, build_model
from diagnostics.package import ModelPackage
from diagnostics.screening.engine import OnnxEngine
from diagnostics.train.onnx_export import export_checked


def count_flops(model: CamNet, shape: tuple[int, int, int]) -> int:
    """FLOPs of one image's forward pass (logits and CAM): convolutions and matrix products,
    a multiply-add counted as 2; elementwise work (normalisation, activations) is not counted."""
    counter = FlopCounterMode(display=False)
    with counter, torch.inference_mode():
        model.forward_with_cam(torch.zeros(1, *shape))
    return int(counter.get_total_flops())


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
        best = min(seconds(multiply) for _ in range(config.matmul_repeats))
        result[f"{name}_gflops"] = flops / best / 1e9
    result["repeats"] = config.matmul_repeats
    result["peak_gflops"] = max(result["torch_gflops"], result["numpy_gflops"])
    return result


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
