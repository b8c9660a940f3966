"""`diagnostics calibrate`: re-derive a package's calibration and operating points on a site's
own labelled studies, written as a new package version."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, positive_int

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands


def _sensitivity(text: str) -> float:
    value = float(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], not {value}")
    return value


def add_parser(commands: Commands) -> None:
    calibrate = commands.add_parser(
        "calibrate",
        help="refit calibration and operating points on a site's labelled studies",
        description=(
            "Screen the labelled folder --data (labels.csv and DICOM studies, e.g. from\n"
            "`diagnostics feedback export`) with the package --model, refit each labelled\n"
            "finding's calibration (the package's method), choose the threshold reaching\n"
            "--target-sensitivity on the calibrated probabilities, and write a new package\n"
            "version at --out recording the site, the data and sensitivity/specificity with\n"
            "Wilson 95% intervals. Unknown labels (-1, empty) are skipped and counted; a\n"
            "finding without a column keeps its calibration. Refused (exit 2) when a finding\n"
            "has too few positives or negatives or would be inverted. --model is not changed."
        ),
        epilog=(
            "example:\n"
            "  diagnostics calibrate --model models/cxr-demo --data feedback-2024-06 \\\n"
            "      --target-sensitivity 0.9 --site st-mary --out models/cxr-demo-st-mary"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    calibrate.add_argument("--model", type=Path, required=True, help="the package to calibrate")
    calibrate.add_argument("--data", type=Path, required=True, help="the labelled folder")
    calibrate.add_argument(
        "--target-sensitivity", type=_sensitivity, required=True, help="e.g. 0.9"
    )
    calibrate.add_argument("--out", type=Path, required=True, help="the new package's folder")
    calibrate.add_argument("--site", required=True, help="the site's name, kept in the manifest")
    calibrate.add_argument("--version", help="the new version (default: <previous>+site.<site>)")
    calibrate.add_argument(
        "--min-positives", type=positive_int, default=10, help="per finding (default 10)"
    )
    calibrate.add_argument(
        "--min-negatives", type=positive_int, default=10, help="per finding (default 10)"
    )
    calibrate.add_argument("--threads", type=positive_int, help="inference threads (default: all)")
    calibrate.add_argument("--cache", type=Path, help="folder for preprocessed images (reused)")
    calibrate.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diagnostics.calibrate import calibrate_package

    result = calibrate_package(
        args.model,
        args.data,
        args.out,
        target_sensitivity=args.target_sensitivity,
        site=args.site,
        min_positives=args.min_positives,
        min_negatives=args.min_negatives,
        version=args.version,
        threads=args.threads,
        cache_dir=args.cache,
    )
    print("\n".join(result.summary_lines()))
    return EXIT_OK
