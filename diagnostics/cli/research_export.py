"""`diagnostics research-export`: the command-line face of `export_research` (de-identified
studies, results and feedback to share for research)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, add_database, database_of, print_json

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands


def run(args: argparse.Namespace) -> int:
    from diagnostics.deid.research_export import ExportOptions, export_research

    summary = export_research(
        ExportOptions(
            storage=args.storage,
            out=args.out,
            shift_dates=args.shift_dates,
            salt_file=args.salt_file,
            studies=tuple(args.studies or ()),
            database=database_of(args),
        )
    )
    print_json(summary.as_dict())
    return EXIT_OK


def add_parser(commands: Commands) -> None:
    """Register the subcommand on the `diagnostics` parser's subparsers object."""
    parser = commands.add_parser(
        "research-export",
        help="export de-identified studies, results and feedback for research",
        description=(
            "Copy the intake store's studies with the DICOM PS3.15 Basic Application Level\n"
            "Confidentiality Profile applied (identifying attributes removed, emptied or\n"
            "replaced; UIDs replaced consistently; private tags removed), with the results and\n"
            "feedback mapped to the new UIDs. Instances that may show patient details in their\n"
            "pixels (Burned In Annotation not NO, Secondary Capture, ultrasound, our overlays)\n"
            "are not exported but listed in OUT/quarantine.jsonl.\n\n"
            "UIDs and pseudonyms are keyed by a secret salt: with --salt-file (created if\n"
            "missing; keep it outside the export and private) later exports map the same\n"
            "patients and UIDs the same way; without it, this export cannot be linked to any\n"
            "other. OUT must not exist; it appears complete or not at all."
        ),
        epilog=(
            "examples:\n"
            "  diagnostics research-export --storage storage --out export-2024-06\n"
            "  diagnostics research-export --storage storage --out exp --shift-dates \\\n"
            "      --salt-file ~/.secrets/research.salt --studies 1.2.3.4 1.2.3.5"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--storage", type=Path, required=True, help="the service's storage folder")
    parser.add_argument("--out", type=Path, required=True, help="export folder (must not exist)")
    add_database(parser)
    parser.add_argument(
        "--shift-dates",
        action="store_true",
        help="keep dates, shifted per patient by a keyed number of days (intervals kept)",
    )
    parser.add_argument("--salt-file", type=Path, help="secret salt file (created if missing)")
    parser.add_argument(
        "--studies", nargs="+", metavar="UID", help="export only these Study Instance UIDs"
    )
    parser.set_defaults(handler=run)
