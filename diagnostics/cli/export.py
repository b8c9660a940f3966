"""`diagnostics export`: the model package of a finished (or interrupted) training run, again.

The run is `diagnostics train`'s, resumed from its last checkpoint (`export` refuses a work
folder without one); not to be confused with `research-export` or `feedback export`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from diagnostics.cli import train

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands


def add_parser(commands: Commands) -> None:
    train.add_recipe_parser(
        commands,
        "export",
        "re-export the package of a finished (or interrupted) training run",
        "diagnostics export training/cxr-demo.toml --work work/cxr-demo",
        run,
    )


def run(args: argparse.Namespace) -> int:
    return train.run(args)
