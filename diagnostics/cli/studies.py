"""`diagnostics studies`: the files under some paths, grouped into studies and series by UID."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, print_json

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands


def add_parser(commands: Commands) -> None:
    studies = commands.add_parser(
        "studies",
        help="group DICOM files into studies and series",
        description="Read the headers of every file under the paths; group them by UID.",
        epilog="example:\n  diagnostics studies ./incoming ./more/IM-0001.dcm",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    studies.add_argument("paths", nargs="+", type=Path, help="files or folders")
    studies.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diagnostics.dicom import scan

    studies, refused = scan(args.paths)
    print_json(
        {
            "studies": [
                {
                    "study_instance_uid": study.study_instance_uid,
                    "patient_id": study.patient_id,
                    "duplicates": study.duplicates,
                    "series": [
                        {
                            "series_instance_uid": series.series_instance_uid,
                            "files": [str(item.path) for item in series.instances],
                        }
                        for series in study.series.values()
                    ],
                }
                for study in studies
            ],
            "refused": [
                {"file": str(path), "error": type(exc).__name__, "message": str(exc)}
                for path, exc in refused
            ],
        }
    )
    return EXIT_OK
