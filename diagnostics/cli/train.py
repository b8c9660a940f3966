"""`diagnostics train`: a model package from a recipe (train, calibrate, evaluate, package).

`diagnostics export` (re-packaging a finished or interrupted run) shares the recipe arguments
and the run; only its defaults differ.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from diagnostics.cli.common import EXIT_OK, positive_int, print_json
from diagnostics.errors import ConfigurationError, DatasetError

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands, Handler
    from diagnostics.package import ModelPackage
    from diagnostics.train.recipe import Recipe

SUMMARY = "train, calibrate, evaluate and export a model package from a recipe"


def add_recipe_parser(
    commands: Commands, name: str, summary: str, example: str, handler: Handler
) -> None:
    """The parser `train` and `export` share: a recipe and where its run works."""
    command = commands.add_parser(
        name,
        help=summary,
        description=summary[0].upper() + summary[1:] + ".",
        epilog=f"example:\n  {example}",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    command.add_argument("recipe", type=Path, help="a TOML recipe from training/")
    command.add_argument("--work", type=Path, help="work folder (default work/NAME)")
    command.add_argument("--workers", type=positive_int, default=1, help="data processes")
    command.add_argument(
        "--quiet", action="store_true", help="no per-epoch lines, progress bars nor final table"
    )
    command.add_argument(
        "--allow-weak",
        action="store_true",
        help="export even a finding with too few positives or a validation AUROC near chance "
        "(the model card says so)",
    )
    command.add_argument(
        "--findings",
        type=Path,
        help="site finding catalogue (TOML [[findings]] tables) merged over the shipped one",
    )
    if name == "train":
        command.add_argument(
            "--resume", action="store_true", help="continue from the last checkpoint"
        )
        command.add_argument(
            "--nproc",
            type=positive_int,
            default=1,
            help="train in N local processes through torchrun (DDP: gloo on CPU, NCCL on GPU)",
        )
    else:
        command.set_defaults(resume=True)
        command.add_argument(
            "--precision",
            choices=("fp32", "int8"),
            default="fp32",
            help="int8 also writes an INT8 variant (PACKAGE-int8), kept only if its AUROC drops "
            "<= 0.005 and its ECE rises <= 0.01 per finding on the recipe's test data",
        )
    command.set_defaults(handler=handler)


def add_parser(commands: Commands) -> None:
    add_recipe_parser(
        commands, "train", SUMMARY, "diagnostics train training/cxr-demo.toml --workers 2", run
    )


def _echo(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _rank_argv(args: argparse.Namespace) -> list[str]:
    """This command line for each torchrun rank: the same options, without --nproc."""
    argv = ["-v"] if args.verbose else []
    argv += ["train", str(args.recipe), "--workers", str(args.workers)]
    if args.work is not None:
        argv += ["--work", str(args.work)]
    if args.findings is not None:
        argv += ["--findings", str(args.findings)]
    for flag in ("quiet", "allow_weak", "resume"):
        if getattr(args, flag):
            argv.append("--" + flag.replace("_", "-"))
    return argv


def run(args: argparse.Namespace) -> int:
    from diagnostics.train.pipeline import run_recipe_on_rank
    from diagnostics.train.recipe import load_recipe

    recipe = load_recipe(args.recipe, base=Path.cwd(), findings=args.findings)
    if args.command == "train" and "WORLD_SIZE" not in os.environ:  # once, not on every rank
        _check_labels(recipe, args.workers)
    if getattr(args, "nproc", 1) > 1 and "WORLD_SIZE" not in os.environ:
        from diagnostics.train.distributed import launch

        return launch(args.nproc, _rank_argv(args))
    workdir = args.work or Path("work") / recipe.name
    if args.command == "export" and not (workdir / "checkpoints" / "last.pt").is_file():
        raise ConfigurationError(
            f"{workdir}: no training checkpoint to export; run `diagnostics train` first"
        )
    run = run_recipe_on_rank(
        recipe,
        workdir,
        resume=args.resume or args.command == "export",
        progress=not args.quiet,
        workers=args.workers,
        allow_weak=args.allow_weak,
        echo=None if args.quiet else _echo,
    )
    if run is None:  # a torchrun rank other than 0: rank 0 reports
        return EXIT_OK
    test = run.metrics.get("test") or run.metrics["validation"]
    summary: dict[str, object] = {
        "package": str(run.package.path),
        "sha256": run.package.manifest.sha256,
        "best_epoch": run.fit.best_epoch + 1,
        "auroc": {code: test[code]["auroc"] for code in recipe.findings},
        "evaluated_on": "test" if "test" in run.metrics else "validation",
        "report": str(run.report_dir),
    }
    if getattr(args, "precision", "fp32") == "int8":
        summary["int8"] = _int8_variant(recipe, run.package, args.quiet)
    print_json(summary)
    return EXIT_OK


def _check_labels(recipe: Recipe, workers: int) -> None:
    """The label QA report (`diagnostics labels check`) on stderr before any work; blocking
    problems refuse the run."""
    from diagnostics.train.label_check import check_labels, render
    from diagnostics.train.pipeline import ensure_data

    if recipe.data.layout not in ("synth", "labelled"):
        return
    ensure_data(recipe, workers)
    report = check_labels(
        recipe.data.train,
        recipe.findings,
        validation_fraction=recipe.data.validation_fraction,
        seed=recipe.seed,
        test=recipe.data.test,
    )
    print(render(report), file=sys.stderr)
    if not report.ok:
        raise DatasetError(f"{recipe.data.train}: " + "; ".join(report.blocking))


def _int8_variant(recipe: Recipe, package: ModelPackage, quiet: bool) -> dict[str, object]:
    """Quantize the exported package and check it on the recipe's held-out data."""
    from diagnostics.precision import reduced_precision_package

    if recipe.data.test is None:
        raise ConfigurationError(
            "--precision int8 checks the variant on held-out studies: set `test` in the "
            "recipe's [data] table"
        )
    out = package.path.with_name(package.path.name + "-int8")
    if out.exists():
        raise ConfigurationError(f"{out} already exists: remove it to build the variant again")
    result = reduced_precision_package(
        package,
        out,
        train_root=recipe.data.train,
        test_root=recipe.data.test,
        layout=recipe.data.layout,
        options=recipe.data.options,
    )
    return {
        "package": str(result.package.path),
        "sha256": result.package.manifest.sha256,
        "checked_on": result.data,
        "findings": {check.code: check.as_dict() for check in result.checks},
    }
