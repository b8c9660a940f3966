"""Decode + preprocess images/s before and after issue #17's changes, interleaved in one process.

"before": `parse_instance(...).decode()` then `reference_preprocess` (the MONAI transforms).
"after": `parse_instance(...).decode(min_size=model input)` (JPEG 2000 at the resolution level
the model needs) then `preprocess_image` (the checked fast path). Inputs are the synthetic
radiographs `diagnostics bench` screens (512 x 512, uncompressed and JPEG 2000 Lossless), plus
a larger JPEG 2000 one where a reduced level exists. Each round times every runner once, in a
rotating order, so machine load drifts affect them alike; medians of the rounds are reported.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_preprocess.py --rounds 9 --images 8
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless

from diagnostics.dicom.reader import parse_instance
from diagnostics.package import load_package
from diagnostics.preprocess import PreprocessSpec, preprocess_image, reference_preprocess
from diagnostics.synth.dx import build_dx
from diagnostics.synth.study import SynthConfig, make_study

INPUTS: dict[str, tuple[int, UID]] = {
    "uncompressed_512": (512, ExplicitVRLittleEndian),
    "jpeg2000_512": (512, JPEG2000Lossless),
    "jpeg2000_2048": (2048, JPEG2000Lossless),
}


def sources(size: int, syntax: UID, count: int, seed: int) -> list[bytes]:
    """Whole DICOM files in memory, built as `diagnostics bench` builds its studies."""
    synth = SynthConfig(
        rows=size, columns=size, spacing_mm=0.8 * 512 / size, compressed_fraction=0.0
    )
    files = []
    for index in range(count):
        _, pixels, patient, acquisition = make_study(seed, index, index, synth)
        acquisition = dataclasses.replace(acquisition, transfer_syntax=syntax)
        buffer = io.BytesIO()
        build_dx(pixels, patient, acquisition).save_as(buffer, enforce_file_format=True)
        files.append(buffer.getvalue())
    return files


def runner(
    files: list[bytes], spec: PreprocessSpec, after: bool, stages: dict[str, list[float]]
) -> Callable[[], None]:
    def run() -> None:
        for data in files:
            began = time.perf_counter()
            parsed = parse_instance(data)
            parsed_at = time.perf_counter()
            image = parsed.decode(spec.size) if after else parsed.decode()
            decoded_at = time.perf_counter()
            (preprocess_image if after else reference_preprocess)(image, spec)
            done = time.perf_counter()
            stages["parse"].append(parsed_at - began)
            stages["decode"].append(decoded_at - parsed_at)
            stages["preprocess"].append(done - decoded_at)

    return run


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/cxr-demo"))
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--threads", type=int, default=None, help="torch threads")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    spec = load_package(args.model).manifest.preprocessing
    runners: dict[str, Callable[[], None]] = {}
    stages: dict[str, dict[str, list[float]]] = {}
    for label, (size, syntax) in INPUTS.items():
        files = sources(size, syntax, args.images, args.seed)
        for variant in ("before", "after"):
            name = f"{label}/{variant}"
            stages[name] = {"parse": [], "decode": [], "preprocess": []}
            runners[name] = runner(files, spec, variant == "after", stages[name])
            runners[name]()  # warm: decoder, transform and weight initialisation
            for values in stages[name].values():
                values.clear()
    names = list(runners)
    seconds: dict[str, list[float]] = {name: [] for name in names}
    for done in range(args.rounds):
        shift = done % len(names)
        for name in names[shift:] + names[:shift]:
            began = time.perf_counter()
            runners[name]()
            seconds[name].append(time.perf_counter() - began)
    report: dict[str, object] = {
        "images_per_round": args.images,
        "rounds": args.rounds,
        "model_input": list(spec.size),
        "torch_threads": torch.get_num_threads(),
        "statistic": "median of interleaved rounds; stage ms are medians per image",
    }
    for label in INPUTS:
        row = {}
        for variant in ("before", "after"):
            name = f"{label}/{variant}"
            row[variant] = {
                "images_per_s": args.images / statistics.median(seconds[name]),
                "stage_ms": {
                    stage: 1000 * statistics.median(values)
                    for stage, values in stages[name].items()
                },
            }
        row["speedup"] = row["after"]["images_per_s"] / row["before"]["images_per_s"]
        report[label] = row
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
