"""`diagnostics monitor`: the daily statistics and the drift judgement of a storage folder, as
`/ui/monitoring` shows them; safe beside a running service (read-only snapshot)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, add_database, database_of, positive_int, print_json

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands

EXIT_ALARM = 1
"""A distribution is in drift alarm (so a cron job or a check can act on it)."""


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser(
        "monitor",
        help="daily score statistics and drift against the model's reference",
        description=(
            "Per local day: studies, the not-analysed rate and its reasons, per finding the flag\n"
            "rate and the score histogram, the appearance scores, radiologists' verdicts; and\n"
            "the population stability index (PSI) of the last --drift-days against the\n"
            "model package's reference distributions. Exit 1 on a drift alarm. Reads a\n"
            "read-only snapshot, so it is safe while the service runs."
        ),
        epilog=(
            "examples:\n"
            "  diagnostics monitor --storage work/storage\n"
            "  diagnostics monitor --storage work/storage --days 14 --json\n"
            "  diagnostics monitor --storage work/storage --model models/site-v2 "
            "--timezone Asia/Tashkent"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--storage", type=Path, required=True, help="the service's storage folder")
    parser.add_argument(
        "--model",
        type=Path,
        help="the package in service, whose reference is compared (default: the bundled model "
        "in a source checkout, else DIAGNOSTICS_MODEL)",
    )
    parser.add_argument("--days", type=positive_int, default=30, help="days listed (default 30)")
    parser.add_argument(
        "--drift-days", type=positive_int, default=7, help="the drift window (default 7)"
    )
    parser.add_argument(
        "--drift-threshold", type=float, default=0.2, help="PSI alarm threshold (default 0.2)"
    )
    parser.add_argument(
        "--min-studies",
        type=positive_int,
        default=100,
        help="studies needed before drift is judged (default 100)",
    )
    parser.add_argument("--timezone", help="days in this IANA zone (default this machine's)")
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")
    add_database(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import os

    from diagnostics.constants import BUNDLED_MODEL
    from diagnostics.errors import RequestError
    from diagnostics.package import load_package
    from diagnostics.service.monitoring import MonitorConfig, build_report, report_lines
    from diagnostics.service.viewer import check_timezone, local_zone
    from diagnostics.store import read_snapshot, store_exists

    database = database_of(args)
    if not store_exists(args.storage, database):
        raise RequestError(f"{args.storage} holds no service store (no intake database)")
    if not args.drift_threshold > 0:
        raise RequestError("--drift-threshold must be above 0")
    model = args.model or Path(os.environ.get("DIAGNOSTICS_MODEL") or BUNDLED_MODEL)
    package = load_package(model)
    try:
        zone = local_zone(check_timezone(args.timezone) if args.timezone else None)
    except ValueError as exc:
        raise RequestError(str(exc)) from None
    config = MonitorConfig(args.days, args.drift_days, args.drift_threshold, args.min_studies)
    with read_snapshot(args.storage, database) as snapshot:
        report = build_report(snapshot, package, config, zone)
    if args.json:
        print_json(report.to_dict())
    else:
        sys.stdout.write("\n".join(report_lines(report)) + "\n")
    return EXIT_ALARM if report.alarm else EXIT_OK
