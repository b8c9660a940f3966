"""`diagnostics compare`: a candidate model package against the current one, on one labelled
test set, with a verdict per finding."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, positive_int

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands

COMPARE_LAYOUTS = "synth, labelled, nih, rsna, chexpert, covid, covidx"
"""Named here rather than imported: the dataset registry pulls in torch, and building the
parser must stay fast for every command."""


def add_parser(commands: Commands) -> None:
    compare = commands.add_parser(
        "compare",
        help="compare a candidate model package with the current one on labelled studies",
        description=(
            "Run CANDIDATE and CURRENT (model packages) on the same labelled studies under\n"
            "--data and compare them per finding they share: AUROC of each with a paired\n"
            "bootstrap 95% interval of the difference, sensitivity and specificity at each\n"
            "package's own operating point, and calibration error (ECE). Prints a verdict per\n"
            "finding and overall (better, not different, worse) with the rule that gave it.\n"
            "Exit status 0 whatever the verdict; 2 on unusable input."
        ),
        epilog=(
            "examples:\n"
            "  diagnostics compare work/my-cxr/package models/cxr-demo --data data/cxr-demo/test\n"
            "  diagnostics compare new/ models/cxr-demo --data /data/chestxray14 --layout nih \\\n"
            "      --json compare.json\n"
            "  diagnostics compare new/ old/ --data /data/chexpert --layout chexpert \\\n"
            "      --option uncertain=ignore"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument("candidate", type=Path, help="the new model package")
    compare.add_argument("current", type=Path, help="the model package it would replace")
    compare.add_argument("--data", type=Path, required=True, help="dataset root (test studies)")
    compare.add_argument(
        "--layout", default="synth", help=f"dataset layout: {COMPARE_LAYOUTS} (default synth)"
    )
    compare.add_argument(
        "--split", choices=("all", "train", "test"), default="test", help="default test"
    )
    compare.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a layout option, e.g. uncertain=ignore (repeatable)",
    )
    compare.add_argument("--json", type=Path, help="write the full comparison as JSON here")
    compare.add_argument(
        "--boot", type=positive_int, default=2000, help="bootstrap resamples (default 2000)"
    )
    compare.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    compare.add_argument("--threads", type=positive_int, help="inference threads (default: all)")
    compare.add_argument("--cache", type=Path, help="folder for preprocessed images (reused)")
    compare.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diagnostics.compare import compare_on_dataset
    from diagnostics.datasets import parse_option

    options = dict(parse_option(text) for text in args.option)
    comparison = compare_on_dataset(
        args.candidate,
        args.current,
        args.data,
        layout=args.layout,
        split=args.split,
        options=options,
        n_boot=args.boot,
        seed=args.seed,
        threads=args.threads,
        cache_dir=args.cache,
    )
    if args.json:
        args.json.write_text(json.dumps(comparison.to_dict(), indent=2) + "\n")
    print("\n".join(comparison.summary_lines()))
    return EXIT_OK
