"""Screening throughput on this machine: `diagnostics bench` under the benchmarks/ folder's name.

The measuring code lives in `diagnostics/bench/` (typed, tested, shared with the CLI); this
script only forwards its arguments, so both ways of running it give the same report.

    .venv/bin/python benchmarks/bench_screening.py [--quick] [--json PATH] [--iterations N]
"""

from __future__ import annotations

import sys

from diagnostics.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
