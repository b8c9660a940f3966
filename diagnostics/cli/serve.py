"""`diagnostics serve`: wiring only; the settings, checks and server process are
`diagnostics.serve`'s."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from diagnostics import serve

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands


def add_parser(commands: Commands) -> None:
    serve.add_parser(commands)
    commands.choices["serve"].set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    return serve.run(args)
