"""`diagnostics audit`: read the audit trail (who did what, when, from where, with what outcome)
or verify its hash chain; safe beside a running service (read-only connection, WAL snapshot)."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, add_database, database_of, positive_int, print_json

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands
    from diagnostics.store import AuditEntry, ChainReport

EXIT_BROKEN = 1
"""`--verify` found a row altered, deleted or inserted."""

CSV_FIELDS = (
    "id",
    "at",
    "actor",
    "action",
    "study_instance_uid",
    "sop_instance_uid",
    "address",
    "outcome",
    "outcome_name",
    "detail",
    "hash",
)


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser(
        "audit",
        help="read or verify the audit trail of a service's storage folder",
        description=(
            "List the audit trail (fields after IHE ATNA: who, what, when, where from,\n"
            "outcome), oldest first, filtered; or, with --verify, walk its hash chain and name\n"
            "the first row altered, deleted or inserted (exit 1). Reads a read-only snapshot,\n"
            "so it is safe while the service runs. Times are UTC."
        ),
        epilog=(
            "examples:\n"
            "  diagnostics audit --storage work/storage --since 7d --format text\n"
            "  diagnostics audit --storage work/storage --study 1.2.3 --format csv --out a.csv\n"
            "  diagnostics audit --storage work/storage --user ORTHANC --outcome failure\n"
            "  diagnostics audit --storage work/storage --verify"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--storage", type=Path, required=True, help="the service's storage folder")
    parser.add_argument(
        "--verify", action="store_true", help="check the hash chain instead of listing rows"
    )
    parser.add_argument("--since", help="from this time on: 7d, 12h, 30m, 2026-12-01, ISO time")
    parser.add_argument("--until", help="before this time (a bare date: to the end of that day)")
    parser.add_argument("--study", help="rows about this Study Instance UID")
    parser.add_argument("--user", help="rows of this actor: token:ab12cd, dimse:ORTHANC or ORTHANC")
    parser.add_argument("--event", help="rows of this action, e.g. study_screened")
    parser.add_argument("--outcome", choices=("success", "failure"))
    parser.add_argument("--limit", type=positive_int, help="at most this many rows (the oldest)")
    parser.add_argument("--format", choices=("json", "csv", "text"), default="json")
    parser.add_argument("--out", type=Path, help="write here instead of stdout")
    add_database(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diagnostics.errors import RequestError
    from diagnostics.store import AuditFilter, read_audit, store_exists, verify_audit
    from diagnostics.store.audit import parse_when

    database = database_of(args)
    if not store_exists(args.storage, database):
        raise RequestError(f"{args.storage} holds no service store (no intake database)")
    if args.verify:
        report = verify_audit(args.storage, database)
        _emit(args, _report_text(report, args.format))
        return EXIT_OK if report.ok else EXIT_BROKEN
    where = AuditFilter(
        since=parse_when(args.since) if args.since else None,
        until=parse_when(args.until, end=True) if args.until else None,
        study=args.study,
        user=args.user,
        event=args.event,
        outcome=args.outcome,
    )
    _, rows = read_audit(args.storage, where, args.limit, database)
    _emit(args, _rows_text(rows, args.format))
    return EXIT_OK


def _rows_text(rows: list[AuditEntry], form: str) -> str:
    if form == "text":
        return "".join(row.text() + "\n" for row in rows)
    if form == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, CSV_FIELDS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            record = row.as_dict()
            record["detail"] = json.dumps(record["detail"], sort_keys=True, default=str)
            writer.writerow(record)
        return buffer.getvalue()
    return json.dumps([row.as_dict() for row in rows], indent=2) + "\n"


def _report_text(report: ChainReport, form: str) -> str:
    if form != "text":
        return json.dumps(report.as_dict(), indent=2) + "\n"
    if report.ok:
        span = f"ids {report.first_id} to {report.last_id}" if report.rows else "no rows"
        return f"audit trail intact: {report.rows} rows ({span}), head {report.head}\n"
    return f"audit trail BROKEN at row {report.problem_id}: {report.message}\n"


def _emit(args: argparse.Namespace, text: str) -> None:
    if args.out is None:
        sys.stdout.write(text)
        return
    from diagnostics.durable import write_file

    write_file(args.out, text.encode("utf-8"))
    print_json({"out": str(args.out), "bytes": len(text.encode("utf-8"))})
