"""`diagnostics tokens`: API tokens, one per integration (add, list, revoke).

A new token is printed once and stored only as its SHA-256: lost means revoke and add again.
The service looks tokens up per request, so a revoked token is refused at its next request,
without a restart. The environment's tokens (DIAGNOSTICS_API_TOKEN*) keep working beside these.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, add_database, database_of, print_json
from diagnostics.cli.users import cli_actor

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser(
        "tokens",
        help="manage API tokens, one per integration",
        description=(
            "Named API tokens for integrations (PACS router, RIS, scripts): sent as\n"
            "`Authorization: Bearer <token>`, audited as token:NAME. Works while the service runs."
        ),
        epilog=(
            "examples:\n"
            "  diagnostics tokens add orthanc-router --storage diagnostics-data\n"
            "  diagnostics tokens list --storage diagnostics-data\n"
            "  diagnostics tokens revoke orthanc-router --storage diagnostics-data"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    add = actions.add_parser("add", help="make a token and print it once")
    add.add_argument("name", help="the integration's name: a-z, 0-9, '.', '_', '-'")
    listing = actions.add_parser("list", help="tokens with created, last used, revoked")
    revoke = actions.add_parser("revoke", help="refuse the token from its next request on")
    revoke.add_argument("name")
    for sub in (add, listing, revoke):
        sub.add_argument("--storage", type=Path, required=True, help="the service's storage folder")
        add_database(sub)
        sub.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diagnostics.service import users
    from diagnostics.store import open_users

    store = open_users(args.storage, database=database_of(args))
    command, actor = args.tokens_command, cli_actor()
    if command == "add":
        name, token = users.add_token(store, args.name, actor)
        print_json({"name": name, "token": token})
        print(
            "the token is shown only now: store it in the integration's settings", file=sys.stderr
        )
    elif command == "list":
        print_json([t.listing() for t in store.tokens()])
    else:
        users.revoke_token(store, args.name, actor)
        print_json({"name": args.name, "revoked": True})
    return EXIT_OK
