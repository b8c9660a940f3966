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
            "cold start to ready, memory per worker and C-STORE to recorded result.\n"
            "With --nodes 1,2 instead: 1 and 2 service nodes on one throwaway PostgreSQL and one\n"
            "storage folder, each node pinned to its share of the cores; throughput and latency\n"
            "of bursts of STOW-RS studies, rounds interleaved (nodes2_vs_nodes1)."
        ),
        epilog=(
            "examples:\n"
            "  diagnostics bench --json bench.json\n"
            "  diagnostics bench --quick --json /tmp/quick.json --model models/cxr-demo\n"
            "  diagnostics bench --service --json service-bench.json\n"
            "  diagnostics bench --nodes 1,2 --json nodes-bench.json"
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
        help="timed rounds per measurement (default 10; with --service: rounds, default 5; "
        "with --nodes: rounds, default 3)",
    )
    kind = bench.add_mutually_exclusive_group()
    kind.add_argument(
        "--service",
        action="store_true",
        help="benchmark the HTTP service against in-process screening instead",
    )
    kind.add_argument(
        "--nodes",
        type=node_counts,
        metavar="N,M",
        help="benchmark that many service nodes on shared PostgreSQL instead (e.g. 1,2; "
        "needs PostgreSQL installed)",
    )
    bench.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default="onnxruntime",
        help="with --service or --nodes: the runtime used (default onnxruntime)",
    )
    bench.set_defaults(handler=run)


def node_counts(text: str) -> tuple[int, ...]:
    """`1,2`: distinct node counts, each at least 1."""
    try:
        counts = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: node counts such as 1,2") from None
    if min(counts) < 1 or len(set(counts)) != len(counts):
        raise argparse.ArgumentTypeError(f"{text!r}: distinct node counts, each at least 1")
    return counts


def run(args: argparse.Namespace) -> int:
    if args.service:
        return run_service(args)
    if args.nodes:
        return run_nodes(args)
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


def run_nodes(args: argparse.Namespace) -> int:
    from diagnostics.bench.nodes import NodesBenchConfig, nodes_summary_lines, run_nodes_bench

    if args.quick:
        config = NodesBenchConfig.quick_run(args.model, args.nodes)
    else:
        config = NodesBenchConfig(model=args.model, nodes=args.nodes, engine=args.engine)
    if args.iterations is not None:
        config = dataclasses.replace(config, rounds=args.iterations)
    report = run_nodes_bench(config)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print("\n".join(nodes_summary_lines(report)))
    return EXIT_OK
