"""What reduced-resolution JPEG 2000 decoding changes in the model's input and in its AUROC.

Synthetic test-split studies (seed 202, the bundled model's test seed) are rendered at a size at
least twice the model input, stored as JPEG 2000 Lossless, and preprocessed twice: from the full
decode and from the reduced one (`decode_image(..., min_size=model input)`). Reports the tensor
difference (max, mean, 99th percentile, on the [0, 1] scale) and per-finding AUROC of the
bundled model with either input. A measurement, not a test:

    PYTHONPATH=. .venv/bin/python benchmarks/j2k_reduce_accuracy.py --studies 300 --size 1024
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import sys
from pathlib import Path

import numpy as np
from pydicom.uid import JPEG2000Lossless

from diagnostics.dicom.pixels import decode_image
from diagnostics.dicom.reader import parse_instance
from diagnostics.package import load_package
from diagnostics.preprocess import preprocess_image
from diagnostics.screening.engine import OnnxEngine
from diagnostics.synth.dx import build_dx
from diagnostics.synth.study import SynthConfig, make_study
from diagnostics.train.metrics import auroc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/cxr-demo"))
    parser.add_argument("--studies", type=int, default=300)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--seed", type=int, default=202)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    package = load_package(args.model)
    manifest = package.manifest
    spec = manifest.preprocessing
    engine = OnnxEngine(package)
    synth = SynthConfig(
        rows=args.size,
        columns=args.size,
        spacing_mm=0.4 * 1024 / args.size,
        compressed_fraction=0.0,
    )
    codes = [finding.code for finding in manifest.findings]
    labels: dict[str, list[int]] = {code: [] for code in codes}
    inputs: dict[str, list[np.ndarray]] = {"full": [], "reduced": []}
    differences: list[np.ndarray] = []
    reductions: list[int] = []
    for index in range(args.studies):
        truth, pixels, patient, acquisition = make_study(args.seed, index, index, synth)
        acquisition = dataclasses.replace(acquisition, transfer_syntax=JPEG2000Lossless)
        buffer = io.BytesIO()
        build_dx(pixels, patient, acquisition).save_as(buffer, enforce_file_format=True)
        parsed = parse_instance(buffer.getvalue())
        full = decode_image(parsed.dataset, parsed.info)
        reduced = decode_image(parsed.dataset, parsed.info, min_size=spec.size)
        reductions.append(reduced.reduction)
        a, b = preprocess_image(full, spec).numpy(), preprocess_image(reduced, spec).numpy()
        inputs["full"].append(a)
        inputs["reduced"].append(b)
        differences.append(np.abs(a - b).ravel())
        for code in codes:
            labels[code].append(truth.findings[code])
        if (index + 1) % 50 == 0:
            print(f"{index + 1} studies", file=sys.stderr)
    scores: dict[str, dict[str, float]] = {}
    for name, tensors in inputs.items():
        logits = np.concatenate(
            [engine.run(np.stack(tensors[i : i + 16])).logits for i in range(0, len(tensors), 16)]
        )
        scores[name] = {code: auroc(labels[code], logits[:, k]) for k, code in enumerate(codes)}
    every = np.concatenate(differences)
    per_image_max = [float(d.max()) for d in differences]
    report = {
        "studies": args.studies,
        "size": [args.size, args.size],
        "model_input": list(spec.size),
        "reduce_factors": sorted(set(reductions)),
        "tensor_difference": {
            "max": float(every.max()),
            "mean": float(every.mean()),
            "p99": float(np.percentile(every, 99)),
            "p999": float(np.percentile(every, 99.9)),
            "median_of_per_image_max": float(np.median(per_image_max)),
        },
        "auroc": scores,
        "positives": {code: int(sum(labels[code])) for code in codes},
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
