"""What every command shares: exit codes, JSON on stdout, argument types.

Contract (docs/architecture.md): results as JSON on stdout with exit 0; for input that cannot
be used, one line `error: <ErrorClass>: <message>` on stderr and exit 2 (`main` prints it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
    """The `diagnostics` parser's subparsers: each command module adds its own parser here."""

Handler: TypeAlias = Callable[[argparse.Namespace], int]
"""A command's `run`: the parsed arguments in, the exit status out."""

EXIT_OK = 0
EXIT_INPUT = 2


def print_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2)
    sys.stdout.write("\n")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def add_database(parser: argparse.ArgumentParser) -> None:
    """`--database URL` for a command that opens a service's store (`database_of` reads it)."""
    parser.add_argument(
        "--database",
        metavar="URL",
        help="the store's database when it is not the storage folder's SQLite: "
        "postgresql://USER@HOST/DB (DIAGNOSTICS_DATABASE_URL; a password from PGPASSWORD or "
        "~/.pgpass, never on the command line)",
    )


def database_of(args: argparse.Namespace) -> str | None:
    """The `--database` given, else DIAGNOSTICS_DATABASE_URL, else None (SQLite)."""
    import os

    return getattr(args, "database", None) or os.environ.get("DIAGNOSTICS_DATABASE_URL") or None
