"""`diagnostics users`: named users of the review UI (add, list, disable, enable, reset-password).

Writes go to the storage folder's database beside a running service (SQLite WAL): the service
reads users per request, so a change takes effect without a restart. Passwords are read from
stdin when it is not a terminal (one line), else asked twice without echo; they are stored only
as scrypt hashes (`diagnostics.service.users`) and never printed.
"""

from __future__ import annotations

import argparse
import getpass
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, add_database, database_of, print_json
from diagnostics.errors import InputError

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands

ROLES = ("radiologist", "admin", "integration")


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser(
        "users",
        help="manage the review UI's named users",
        description=(
            "Named users sign in at /ui/login. Roles: radiologist (read, feedback, priority,\n"
            "read marks), admin (also the audit trail and the users page), integration (API\n"
            "tokens only: see `diagnostics tokens`). Works while the service runs."
        ),
        epilog=(
            "examples:\n"
            "  diagnostics users add aziza --role radiologist --storage diagnostics-data\n"
            "  printf '%s\\n' \"$PW\" | diagnostics users add admin --role admin --storage d\n"
            "  diagnostics users list --storage diagnostics-data\n"
            "  diagnostics users disable aziza --storage diagnostics-data"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="add a user (password from stdin or asked twice)")
    add.add_argument("name", help="user name: a-z, 0-9, '.', '_', '-'")
    add.add_argument("--role", choices=ROLES, required=True)
    listing = actions.add_parser("list", help="users with role, disabled, locked, last login")
    disable = actions.add_parser("disable", help="end the user's sessions and refuse sign-in")
    disable.add_argument("name")
    enable = actions.add_parser("enable", help="let a disabled or locked user sign in again")
    enable.add_argument("name")
    reset = actions.add_parser("reset-password", help="set a new password (ends sessions)")
    reset.add_argument("name")
    for sub in (add, listing, disable, enable, reset):
        sub.add_argument("--storage", type=Path, required=True, help="the service's storage folder")
        add_database(sub)
        sub.set_defaults(handler=run)


def cli_actor() -> str:
    """Who ran the command, for the audit trail: the operating-system account."""
    try:
        return "cli:" + getpass.getuser()
    except (KeyError, OSError):
        return "cli:unknown"


def read_password() -> str:
    """One line of stdin when it is not a terminal; else asked twice without echo."""
    if not sys.stdin.isatty():
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    first = getpass.getpass("Password: ")
    if getpass.getpass("Password again: ") != first:
        raise InputError("the two passwords differ")
    return first


def run(args: argparse.Namespace) -> int:
    from diagnostics.service import users
    from diagnostics.store import open_users

    store = open_users(args.storage, database=database_of(args))
    command, actor = args.users_command, cli_actor()
    if command == "add":
        name = users.add_user(store, args.name, args.role, read_password(), actor)
        print_json({"name": name, "role": args.role})
    elif command == "list":
        now = time.time()
        print_json([u.listing(now) for u in store.users()])
    elif command in ("disable", "enable"):
        users.set_disabled(store, args.name, command == "disable", actor)
        print_json({"name": args.name, "disabled": command == "disable"})
    else:
        users.reset_password(store, args.name, read_password(), actor)
        print_json({"name": args.name, "password": "changed"})
    return EXIT_OK
