"""Decode + validate time for a full-size radiograph, ours beside MONAI's LoadImage, one run.

A 2500 x 2048, 12-bit synthetic chest radiograph is written uncompressed and as JPEG 2000
(lossless); each file is read repeatedly by `diagnostics.dicom.read_instance` and by
`monai.transforms.LoadImage`, interleaved so that both see the same machine state. The report
gives median seconds per read and the ratio LoadImage / ours (goal: >= 4 on uncompressed).

    .venv/bin/python benchmarks/bench_ingest.py [--repeats 15] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from diagnostics.dicom import read_instance
from diagnostics.synth.dx import build_dx
from diagnostics.synth.study import SynthConfig, make_study

ROWS, COLUMNS, SPACING = 2500, 2048, 0.168


def write_radiographs(folder: Path) -> dict[str, Path]:
    config = SynthConfig(rows=ROWS, columns=COLUMNS, spacing_mm=SPACING)
    _, pixels, patient, acquisition = make_study(2024, 0, 0, config)
    files = {}
    for label, syntax in (("uncompressed", ExplicitVRLittleEndian), ("jpeg2000", JPEG2000Lossless)):
        acq = acquisition.__class__(**{**acquisition.__dict__, "transfer_syntax": syntax})
        path = folder / f"{label}.dcm"
        build_dx(pixels, patient, acq).save_as(path, enforce_file_format=True)
        files[label] = path
    return files


def median_seconds(readers: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Interleave the readers so drift in machine load affects them alike."""
    times: dict[str, list[float]] = {name: [] for name in readers}
    for read in readers.values():
        read()  # warm: imports, codec initialisation, page cache
    for _ in range(repeats):
        for name, read in readers.items():
            start = time.perf_counter()
            read()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


def run(repeats: int) -> dict[str, object]:
    from monai.transforms import LoadImage

    load = LoadImage(image_only=True)
    report: dict[str, object] = {"image": f"{ROWS} x {COLUMNS}, 12 bits stored in 16"}
    with tempfile.TemporaryDirectory() as tmp:
        files = write_radiographs(Path(tmp))
        for label, path in files.items():
            count = repeats if label == "uncompressed" else max(3, repeats // 3)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = median_seconds(
                    {"ours": lambda p=path: read_instance(p), "monai": lambda p=path: load(p)},
                    count,
                )
            report[label] = {
                "bytes": path.stat().st_size,
                "repeats": count,
                "ours_s": round(result["ours"], 5),
                "monai_loadimage_s": round(result["monai"], 5),
                "speedup": round(result["monai"] / result["ours"], 2),
            }
    uncompressed = report["uncompressed"]
    assert isinstance(uncompressed, dict)
    report["ratios"] = {"loadimage_vs_ours_uncompressed": uncompressed["speedup"]}
    report["goal"] = "ours >= 4x faster than LoadImage on the uncompressed file"
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--json", action="store_true", help="print the report as JSON only")
    args = parser.parse_args()
    report = run(args.repeats)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        print()
    else:
        for key, value in report.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
