"""`diagnostics synth`: synthetic chest radiograph studies with their ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, positive_int, print_json
from diagnostics.errors import ConfigurationError

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands


def add_parser(commands: Commands) -> None:
    synth = commands.add_parser(
        "synth",
        help="generate synthetic chest radiograph studies with ground truth",
        description=(
            "Write synthetic chest X-ray studies (DICOM DX) under --out with OUT/labels.csv.\n"
            "The same --seed always gives the same studies."
        ),
        epilog=(
            "examples:\n"
            "  diagnostics synth --out data/train --studies 2000 --seed 1 --workers 2\n"
            "  diagnostics synth --out /tmp/s --studies 12 --seed 7 --contact-sheet sheet.png"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--studies", type=positive_int, required=True, help="how many studies")
    synth.add_argument("--seed", type=int, required=True, help="random seed")
    synth.add_argument("--rows", type=int, default=1024, help="image rows (default 1024)")
    synth.add_argument("--columns", type=int, default=1024, help="image columns (default 1024)")
    synth.add_argument(
        "--spacing", type=float, default=0.4, help="pixel spacing in mm (default 0.4)"
    )
    synth.add_argument("--workers", type=positive_int, default=1, help="processes to use")
    synth.add_argument(
        "--contact-sheet", type=Path, help="also write a PNG contact sheet of 12 studies"
    )
    synth.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diagnostics.synth import SynthConfig, generate, write_contact_sheet

    try:
        config = SynthConfig(rows=args.rows, columns=args.columns, spacing_mm=args.spacing)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    truths = generate(args.out, args.studies, args.seed, config, workers=args.workers)
    if args.contact_sheet:
        write_contact_sheet(args.contact_sheet, args.seed, config)
    counts = {code: sum(t.findings[code] for t in truths) for code in truths[0].findings}
    print_json(
        {
            "out": str(args.out),
            "studies": len(truths),
            "labels": str(args.out / "labels.csv"),
            "positives": counts,
        }
    )
    return EXIT_OK
