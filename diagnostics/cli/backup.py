"""`diagnostics backup`: a consistent copy of the storage folder, safe while the service runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, print_json

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser(
        "backup",
        help="back up the storage folder (safe while the service runs)",
        description=(
            "Copy the service's databases with SQLite's online backup (one consistent snapshot\n"
            "each, while the service goes on writing), then the files that snapshot refers to\n"
            "(received instances, outputs in the outbox) and the UI session key. manifest.json,\n"
            "written last, lists every file with its size and SHA-256: a folder without it is\n"
            "an interrupted backup. BentoML's folder (metrics), partial uploads, the lock and\n"
            "SQLite's -wal/-shm files are left out (the manifest says why). OUT must be new or\n"
            "empty; it holds patient data: keep it as protected as the storage folder."
        ),
        epilog=(
            "example:\n"
            "  diagnostics backup --storage /var/lib/diagnostics "
            "--out /backup/diagnostics-$(date +%F)"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--storage", type=Path, required=True, help="the service's storage folder")
    parser.add_argument("--out", type=Path, required=True, help="backup folder (new or empty)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diagnostics.service.backup import backup

    summary = backup(args.storage, args.out)
    if summary.missing:
        print(
            f"warning: {len(summary.missing)} file(s) named by the database snapshot were gone "
            "when copied (purged meanwhile); manifest.json lists them under 'missing'",
            file=sys.stderr,
        )
    print_json(summary.as_dict())
    return EXIT_OK
