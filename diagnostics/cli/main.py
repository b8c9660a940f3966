"""`diagnostics`: the parser built from one module per command, and the error contract.

Contract (docs/architecture.md): results as JSON on stdout with exit 0; for input that cannot
be used, one line `error: <ErrorClass>: <message>` on stderr and exit 2; never a traceback.
Building the parser imports no command's work: each `run` imports what it needs, so `--help`
and a mistyped flag stay fast whatever torch costs.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import diagnostics
from diagnostics.cli import (
    audit,
    backup,
    bench,
    calibrate,
    compare,
    export,
    feedback,
    inspect,
    labels,
    models,
    monitor,
    purge,
    research_export,
    restore,
    screen,
    serve,
    studies,
    synth,
    tokens,
    train,
    users,
)
from diagnostics.cli.common import EXIT_INPUT, Handler
from diagnostics.errors import DiagnosticsError
from diagnostics.service.logs import THIRD_PARTY_LOGGERS

COMMANDS = (
    inspect,
    studies,
    synth,
    screen,
    labels,
    train,
    calibrate,
    export,
    bench,
    compare,
    feedback,
    serve,
    research_export,
    purge,
    audit,
    backup,
    restore,
    monitor,
    models,
    users,
    tokens,
)
"""In the order `diagnostics --help` lists them."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diagnostics",
        description="AI pre-screening for radiology: ingest DICOM, generate synthetic studies.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=diagnostics.__version__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def quiet_third_parties(verbose: bool, keep_tracebacks: bool = False) -> None:
    """Logging for one CLI run: the contract allows one stderr line per error, never a traceback.

    Third-party loggers and Python warnings are silenced unless -v; pydicom resets its logger's
    level when first imported, so it is imported before its level is set. Tracebacks are left
    out by the formatter, which formats a copy: a record shared with another handler keeps its
    traceback there.
    """
    logging.basicConfig(
        level=logging.INFO if verbose else logging.ERROR,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.captureWarnings(True)
    import pydicom.config  # noqa: F401

    quiet = logging.ERROR if keep_tracebacks else logging.CRITICAL + 1
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if verbose else quiet)
    if not verbose and not keep_tracebacks:
        for handler in logging.getLogger().handlers:
            handler.setFormatter(NoTraceback("%(levelname)s %(name)s: %(message)s"))


class NoTraceback(logging.Formatter):
    """Leaves out the traceback of a logged failure: the one-line message says what went
    wrong."""

    def format(self, record: logging.LogRecord) -> str:
        bare = logging.makeLogRecord(record.__dict__)
        bare.exc_info = bare.exc_text = bare.stack_info = None
        return super().format(bare)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # The service's log is for its operator: tracebacks of thread-level failures stay there.
    quiet_third_parties(args.verbose, keep_tracebacks=args.command == "serve")
    handler: Handler = args.handler
    try:
        return handler(args)
    except DiagnosticsError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except OSError as exc:
        print(f"error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_INPUT


if __name__ == "__main__":
    sys.exit(main())
