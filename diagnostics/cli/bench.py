"""`diagnostics bench`: how fast screening runs on this machine (the harness is
`diagnostics.bench`, imported only when the command runs)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, positive_int
from diagnostics.constants import BUNDLED_MODEL, ENGINE_CHOICES

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands


def add_parser(commands: Commands) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure ONNX Runtime, PyTorch and pipeline throughput on this machine",
        description=(
            "Measure, in one process: ONNX Runtime vs PyTorch eager images/s (the bundled model\n"
            "and a DenseNet-121), GFLOP/s beside a matrix-multiply peak, and DICOM -> result\n"
            "throughput beside model-only throughput. Prints a summary; --json writes the report.\n"
            "With --service instead: start the real service (`diagnostics serve`) and measure\n"
            "POST /v1/screen at 1 and 8 clients beside in-process screening of the same studies,\n"
            "cold start to ready, memory per worker and C-STORE to recorded result."
        ),
        epilog=(
            "examples:\n"
            "  diagnostics bench --json bench.json\n"
            "  diagnostics bench --quick --json /tmp/quick.json --model models/cxr-demo\n"
            "  diagnostics bench --service --json service-bench.json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("--json", type=Path, help="write the full report as JSON to this file")
    bench.add_argument(
        "--quick", action="store_true", help="a tiny run (seconds) whose numbers mean little"
    )
    bench.add_argument(
        "--model", type=Path, default=BUNDLED_MODEL, help=f"model package (default {BUNDLED_MODEL})"
    )
    bench.add_argument(
        "--iterations",
        type=positive_int,
        help="timed rounds per measurement (default 10; with --service: rounds, default 5)",
    )
    bench.add_argument(
        "--service",
        action="store_true",
        help="benchmark the HTTP service against in-process screening instead",
    )
    bench.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default="onnxruntime",
        help="with --service: the runtime both sides use (default onnxruntime)",
    )
    bench.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if args.service:
        return run_service(args)
    from diagnostics.bench import BenchConfig, run_bench, summary_lines

    config = BenchConfig.quick_run(args.model) if args.quick else BenchConfig(model=args.model)
    if args.iterations is not None:
        config = dataclasses.replace(config, iterations=args.iterations)
    report = run_bench(config)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print("\n".join(summary_lines(report)))
    return EXIT_OK


def run_service(args: argparse.Namespace) -> int:
    from diagnostics.bench.service import (
        ServiceBenchConfig,
        run_service_bench,
        service_summary_lines,
    )

    if args.quick:
        config = ServiceBenchConfig.quick_run(args.model, args.engine)
    else:
        config = ServiceBenchConfig(model=args.model, engine=args.engine)
    if args.iterations is not None:
        config = dataclasses.replace(config, rounds=args.iterations)
    report = run_service_bench(config)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print("\n".join(service_summary_lines(report)))
    return EXIT_OK
