"""`diagnostics inspect`: one DICOM instance, read, validated and decoded, described as JSON."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, print_json

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands


def add_parser(commands: Commands) -> None:
    inspect = commands.add_parser(
        "inspect",
        help="describe one DICOM instance as JSON",
        description="Read, validate and decode one DICOM instance; print a JSON description.",
        epilog="example:\n  diagnostics inspect study-00001/IM-0001.dcm",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inspect.add_argument("file", type=Path, help="a DICOM file")
    inspect.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diagnostics.dicom import read_instance

    print_json(read_instance(args.file).summary())
    return EXIT_OK
