"""`diagnostics purge`: apply the retention window by hand, or see what it would delete.

The same purge the running service does once an hour with `--retain-days`
(`diagnostics.service.retention`); safe while the service runs (a study being screened or with
a delivery pending is never touched). JSON out: the studies, their files and the bytes freed.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, add_database, database_of, print_json

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands
    from diagnostics.store.records import PurgeReport


def add_parser(commands: Commands) -> None:
    purge = commands.add_parser(
        "purge",
        help="delete stored images and outputs older than the retention window",
        description=(
            "Delete the stored images and output files (SR, overlay, presentation state, FHIR "
            "bundles) of studies that are done, with nothing left to deliver, whose newest "
            "result is older than --retain-days. Results, the worklist and the audit trail "
            "stay; the review page and the API say the images were purged. A study sent "
            "again is screened again on what arrives after the purge, and says so. Safe "
            "while the service runs. A --now in the future needs --dry-run."
        ),
        epilog=(
            "examples:\n  diagnostics purge --storage work/storage --retain-days 90 --dry-run\n"
            "  diagnostics purge --storage work/storage --retain-days 90"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    purge.add_argument("--storage", type=Path, required=True, help="the service's storage folder")
    purge.add_argument(
        "--retain-days",
        type=_days,
        help="keep this many days after a study's newest result (default: DIAGNOSTICS_RETAIN_DAYS)",
    )
    purge.add_argument(
        "--dry-run", action="store_true", help="list what would go and the bytes; delete nothing"
    )
    purge.add_argument(
        "--now",
        type=_when,
        help="count the window back from this time instead of now (ISO 8601 or Unix seconds); "
        "a time in the future only with --dry-run: what would go on that day",
    )
    add_database(purge)
    purge.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diagnostics.errors import ConfigurationError
    from diagnostics.service.retention import purge
    from diagnostics.service.settings import ServiceSettings
    from diagnostics.store import open_store, store_exists

    if args.now is not None and args.now > time.time() and not args.dry_run:
        raise ConfigurationError(
            "--now is in the future: that would delete images before their retention window "
            "ends; add --dry-run to see what would go on that day"
        )
    days = args.retain_days
    if days is None:
        days = ServiceSettings.from_env().retain_days  # DIAGNOSTICS_RETAIN_DAYS, checked there
        if days is None:
            raise ConfigurationError(
                "how long to keep images: give --retain-days N (or DIAGNOSTICS_RETAIN_DAYS)"
            )
    database = database_of(args)
    if not store_exists(args.storage, database):
        raise ConfigurationError(f"--storage {args.storage}: no intake database there")
    store = open_store(args.storage, database=database)
    try:
        report = purge(store, days, now=args.now, dry_run=args.dry_run, actor="cli:purge")
    finally:
        store.close()
    print_json(_summary(report, days))
    return EXIT_OK


def _summary(report: PurgeReport, days: float) -> dict[str, object]:
    return {
        "dry_run": report.dry_run,
        "retain_days": days,
        "cutoff": _iso(report.cutoff),
        "studies": [
            {
                "study_instance_uid": s.study_instance_uid,
                "result_created": _iso(s.result_created),
                "files": len(s.files),
                "bytes": s.bytes,
            }
            for s in report.studies
        ],
        "study_count": len(report.studies),
        "file_count": sum(len(s.files) for s in report.studies),
        "leftover_files": len(report.leftovers),
        "bytes_freed": report.bytes,
    }


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _days(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a number of days, not {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 days, not {text}")
    return value


def _when(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        problem = f"an ISO 8601 time or Unix seconds, not {text!r}"
        raise argparse.ArgumentTypeError(problem) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
