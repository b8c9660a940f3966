"""`diagnostics bench`: how fast screening runs on this machine (the harness is
`diagnostics.bench`, imported only when the command runs)."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, positive_int
from diagnostics.constants import BUNDLED_MODEL

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands


def add_parser(commands: Commands) -> None:
    bench = commands.add_parser(
        "bench",
        help="measure ONNX Runtime, PyTorch and pipeline throughput on this machine",
        description=(
            "Measure, in one process: ONNX Runtime vs PyTorch eager images/s (the bundled model\n"
            "and a DenseNet-121), GFLOP/s beside a matrix-multiply peak, and DICOM -> result\n"
            "throughput beside model-only throughput. Prints a summary; --json writes the report."
        ),
        epilog=(
            "examples:\n"
            "  diagnostics bench --json bench.json\n"
            "  diagnostics bench --quick --json /tmp/quick.json --model models/cxr-demo"
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
        "--iterations", type=positive_int, help="timed rounds per measurement (default 10)"
    )
    bench.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diagnostics.bench import BenchConfig, run_bench, summary_lines

    config = BenchConfig.quick_run(args.model) if args.quick else BenchConfig(model=args.model)
    if args.iterations is not None:
        config = dataclasses.replace(config, iterations=args.iterations)
    report = run_bench(config)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print("\n".join(summary_lines(report)))
    return EXIT_OK
