"""`diagnostics labels check`: the label QA report of a labelled folder, before training.

Exit status: 0 when training could start (warnings allowed), 1 when a blocking problem was found
(no study matched a row, a finding without positive or negative labels), 2 when the folder or
its labels cannot be read at all (the CLI's error contract).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, print_json
from diagnostics.errors import ConfigurationError

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands

SUMMARY = "check a labelled folder's labels before training (QA report)"
EXIT_BLOCKING = 1


def add_parser(commands: Commands) -> None:
    labels = commands.add_parser(
        "labels", help="labelled folders: check labels before training", description=SUMMARY
    )
    actions = labels.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = actions.add_parser(
        "check",
        help=SUMMARY,
        description=SUMMARY[0].upper() + SUMMARY[1:] + ". " + (__doc__ or "").split("\n\n")[1],
        epilog="example:\n  diagnostics labels check /data/pacs-export --findings site.toml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument("folder", type=Path, help="DICOM studies (any structure) and labels.csv")
    check.add_argument(
        "--findings", type=Path, help="site finding catalogue (TOML [[findings]] tables)"
    )
    check.add_argument(
        "--finding",
        action="append",
        dest="codes",
        metavar="CODE",
        help="a finding to check (repeatable; default: every catalogue finding with a column)",
    )
    check.add_argument(
        "--recipe",
        type=Path,
        help="take the findings, the validation split and the test folder from this recipe",
    )
    check.add_argument("--json", action="store_true", help="the report as JSON")
    check.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from diagnostics.findings import load_catalogue

    catalogue = load_catalogue(args.findings)  # a bad site file fails before torch is imported
    from diagnostics.train.label_check import check_labels, labelled_codes, render
    from diagnostics.train.recipe import load_recipe

    fraction, seed, test, codes = 0.15, 0, None, args.codes
    if args.recipe is not None:
        recipe = load_recipe(args.recipe, base=Path.cwd(), findings=args.findings)
        fraction, seed = recipe.data.validation_fraction, recipe.seed
        test = recipe.data.test
        codes = codes or list(recipe.findings)
        catalogue = recipe.catalogue
    if codes:
        unknown = [code for code in codes if code not in catalogue]
        if unknown:
            raise ConfigurationError(
                f"unknown finding(s) {', '.join(unknown)}; add them with --findings FILE"
            )
    else:
        codes = labelled_codes(args.folder, catalogue)
    report = check_labels(args.folder, codes, validation_fraction=fraction, seed=seed, test=test)
    if args.json:
        print_json(report.as_dict())
    else:
        print(render(report))
    return EXIT_OK if report.ok else EXIT_BLOCKING
