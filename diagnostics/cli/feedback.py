"""`diagnostics feedback export`: radiologists' feedback from the review UI as a labelled folder
that training reads (kept inside the hospital: the DICOM files keep their patient data)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, add_database, database_of, print_json

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands


def add_parser(commands: Commands) -> None:
    feedback = commands.add_parser(
        "feedback",
        help="use radiologists' feedback from the review UI",
        description="Work with the feedback radiologists record in the review UI (/ui).",
        epilog="example:\n  diagnostics feedback export --storage diagnostics-data --out fb",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = feedback.add_subparsers(dest="feedback_command", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export",
        help="write feedback as a labelled folder that training reads",
        description=(
            "Write every study with feedback as OUT/study-NNNNN/IM-0001.dcm plus OUT/labels.csv\n"
            "(the `diagnostics synth` layout, read by training recipes). Labels: agree = the\n"
            "model's flag, disagree = its opposite, missed = 1 with the marked location; a\n"
            "finding without a verdict takes the model's flag (label_source_<code> says so)\n"
            "unless --unreviewed skip. The DICOM files keep their patient data: for use inside\n"
            "the hospital (use research-export to share). OUT must not exist."
        ),
        epilog=(
            "examples:\n"
            "  diagnostics feedback export --storage diagnostics-data --out feedback-2024-06\n"
            "  diagnostics feedback export --storage /srv/diagnostics --out fb --unreviewed skip"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("--storage", type=Path, required=True, help="the service's storage folder")
    export.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    export.add_argument(
        "--unreviewed",
        choices=("model", "skip"),
        default="model",
        help="findings without a verdict: take the model's flag (default) or skip the study",
    )
    add_database(export)
    export.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diagnostics.service.feedback_folder import export_feedback

    result = export_feedback(args.storage, args.out, args.unreviewed, database_of(args))
    print_json(result.as_dict())
    return EXIT_OK
