"""`diagnostics restore`: a backup, verified file by file, into a new storage folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, print_json

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser(
        "restore",
        help="restore a backup into a storage folder (verified first)",
        description=(
            "Check BACKUP against its manifest.json (every file's size and SHA-256, the\n"
            "databases' integrity) and copy it into STORAGE, which must be new or empty and\n"
            "not held by a running service. A missing manifest (an interrupted backup), a\n"
            "missing or altered file refuses the whole restore, naming the file; nothing is\n"
            "written then. --check verifies the backup only."
        ),
        epilog=(
            "examples:\n"
            "  diagnostics restore /backup/diagnostics-2026-12-01 --storage /var/lib/diagnostics\n"
            "  diagnostics restore /backup/diagnostics-2026-12-01 --check"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("backup", type=Path, help="a folder written by `diagnostics backup`")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--storage", type=Path, help="the storage folder to restore into")
    target.add_argument("--check", action="store_true", help="only verify the backup")
    parser.add_argument(
        "--force",
        action="store_true",
        help="restore into a non-empty (stopped) storage folder, moving its contents aside "
        "into pre-restore-<time>/ (never deleted); a running service's folder is always refused",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diagnostics.service.restore import restore, verify

    if args.check:
        manifest = verify(args.backup)
        print_json(
            {
                "backup": str(args.backup),
                "verified": True,
                "started": manifest.started,
                "files": len(manifest.files),
                "bytes": sum(f.size for f in manifest.files),
                "diagnostics_version": manifest.diagnostics_version,
            }
        )
        return EXIT_OK
    print_json(restore(args.backup, args.storage, force=args.force).as_dict())
    return EXIT_OK
