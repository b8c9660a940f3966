"""`diagnostics models`: the service's model registry (list, install, shadow, promote, roll back,
compare the shadow with the active model on radiologists' feedback).

Safe beside a running service: the registry's state file is replaced atomically under a lock,
and the service follows it within a few seconds, swapping its engine between studies.
"""

from __future__ import annotations

import argparse
import getpass
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, add_database, database_of, print_json

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands
    from diagnostics.store import Store


def add_parser(commands: Commands) -> None:
    parser = commands.add_parser(
        "models",
        help="the service's installed model versions: shadow, promote, roll back",
        description=(
            "Manage the model registry under --storage (<storage>/models/). One version is\n"
            "active; one may run in shadow on every study (results kept apart, never sent).\n"
            "A version without site calibration (`diagnostics calibrate`) is promoted only\n"
            "with --override-calibration REASON. Every change is audited; a running service\n"
            "follows it within a few seconds without a restart."
        ),
        epilog=(
            "examples:\n"
            "  diagnostics models list --storage work/storage\n"
            "  diagnostics models install work/cxr-demo-site --storage work/storage\n"
            "  diagnostics models shadow 1.0.0+site.a --storage work/storage\n"
            "  diagnostics models compare --storage work/storage\n"
            "  diagnostics models promote --storage work/storage\n"
            "  diagnostics models rollback --storage work/storage"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="models_action", required=True, metavar="ACTION")

    def action(name: str, text: str) -> argparse.ArgumentParser:
        sub = actions.add_parser(name, help=text, description=text)
        sub.add_argument("--storage", type=Path, required=True, help="the service's storage folder")
        add_database(sub)
        return sub

    action("list", "installed versions, the active and shadow ones, the history")
    install = action("install", "copy and verify a model package into the registry")
    install.add_argument("package", type=Path, help="the model package folder")
    shadow = action("shadow", "run VERSION in shadow on every study the active model screens")
    shadow.add_argument("version", help="an installed version (or NAME-VERSION)")
    action("unshadow", "stop the shadow model")
    promote = action("promote", "make VERSION (default: the shadow) the active model")
    promote.add_argument("version", nargs="?", help="an installed version (default: the shadow)")
    promote.add_argument(
        "--override-calibration",
        metavar="REASON",
        default="",
        help="promote a version without site calibration; the reason is audited",
    )
    action("rollback", "return to the previously active version")
    compare = action("compare", "active against shadow on radiologists' feedback")
    compare.add_argument("--shadow", dest="shadow_version", help="a version (default: the shadow)")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON")
    parser.set_defaults(handler=run)


def actor() -> str:
    """Who ran the command, for the audit trail."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a container)
        return "cli"


def run(args: argparse.Namespace) -> int:
    from diagnostics.package.registry import ModelRegistry

    registry = ModelRegistry(args.storage)
    if args.models_action == "list":
        print_json(registry.state().model_dump())
        return EXIT_OK
    if args.models_action == "compare":
        from diagnostics.service.shadow_compare import compare_shadow

        comparison = compare_shadow(args.storage, args.shadow_version, database_of(args))
        if args.json:
            print_json(comparison.as_dict())
        else:
            print("\n".join(comparison.lines()))
        return EXIT_OK
    store = _store(args.storage, database_of(args))
    try:
        print_json(_change(args, registry, store))
    finally:
        store.close()
    return EXIT_OK


def _store(storage: Path, database: str | None) -> Store:
    """The service's store, for the audit rows of a change (in PostgreSQL when it is there)."""
    from diagnostics.store import open_store

    storage.mkdir(parents=True, exist_ok=True)
    return open_store(storage, database=database)


def _change(args: argparse.Namespace, registry: object, store: Store) -> dict[str, object]:
    from diagnostics.package.registry import ModelRegistry
    from diagnostics.service import model_admin

    assert isinstance(registry, ModelRegistry)
    who = actor()
    if args.models_action == "install":
        entry = model_admin.install(store, registry, args.package, who)
        return {"installed": entry.key, "site_calibrated": entry.site_calibrated}
    if args.models_action == "shadow":
        return {"shadow": model_admin.shadow(store, registry, args.version, who).key}
    if args.models_action == "unshadow":
        return {"unshadowed": model_admin.unshadow(store, registry, who)}
    if args.models_action == "promote":
        entry, previous = model_admin.promote(
            store, registry, args.version, who, args.override_calibration
        )
        return {"active": entry.key, "previous": previous}
    entry, replaced = model_admin.rollback(store, registry, who)
    return {"active": entry.key, "rolled_back": replaced}
