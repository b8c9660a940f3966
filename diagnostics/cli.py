"""The `diagnostics` command line: the researcher's and administrator's face of the library.

Contract (docs/architecture.md): results as JSON on stdout with exit 0; for input that cannot
be used, one line `error: <ErrorClass>: <message>` on stderr and exit 2; never a traceback.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import diagnostics
from diagnostics.errors import ConfigurationError, DiagnosticsError

EXIT_OK = 0
EXIT_INPUT = 2
DEFAULT_MODEL = Path(__file__).resolve().parent.parent / "models" / "cxr-demo"
"""The bundled model, found beside the package in a source checkout."""

Handler = Callable[[argparse.Namespace], int]


def _print_json(payload: Any) -> None:
    json.dump(payload, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _cmd_inspect(args: argparse.Namespace) -> int:
    from diagnostics.dicom import read_instance

    _print_json(read_instance(args.file).summary())
    return EXIT_OK


def _cmd_studies(args: argparse.Namespace) -> int:
    from diagnostics.dicom import scan

    studies, refused = scan(args.paths)
    _print_json(
        {
            "studies": [
                {
                    "study_instance_uid": study.study_instance_uid,
                    "patient_id": study.patient_id,
                    "duplicates": study.duplicates,
                    "series": [
                        {
                            "series_instance_uid": series.series_instance_uid,
                            "files": [str(item.path) for item in series.instances],
                        }
                        for series in study.series.values()
                    ],
                }
                for study in studies
            ],
            "refused": [
                {"file": str(path), "error": type(exc).__name__, "message": str(exc)}
                for path, exc in refused
            ],
        }
    )
    return EXIT_OK


def _cmd_synth(args: argparse.Namespace) -> int:
    from diagnostics.synth import SynthConfig, generate, write_contact_sheet

    try:
        config = SynthConfig(rows=args.rows, columns=args.columns, spacing_mm=args.spacing)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from None
    truths = generate(args.out, args.studies, args.seed, config, workers=args.workers)
    if args.contact_sheet:
        write_contact_sheet(args.contact_sheet, args.seed, config)
    counts = {code: sum(t.findings[code] for t in truths) for code in truths[0].findings}
    _print_json(
        {
            "out": str(args.out),
            "studies": len(truths),
            "labels": str(args.out / "labels.csv"),
            "positives": counts,
        }
    )
    return EXIT_OK


def _cmd_train(args: argparse.Namespace) -> int:
    from diagnostics.train.pipeline import run_recipe
    from diagnostics.train.recipe import load_recipe

    recipe = load_recipe(args.recipe, base=Path.cwd())
    workdir = args.work or Path("work") / recipe.name
    if args.command == "export" and not (workdir / "checkpoints" / "last.pt").is_file():
        raise ConfigurationError(
            f"{workdir}: no training checkpoint to export; run `diagnostics train` first"
        )
    run = run_recipe(
        recipe,
        workdir,
        resume=args.resume or args.command == "export",
        progress=not args.quiet,
        workers=args.workers,
    )
    test = run.metrics.get("test") or run.metrics["validation"]
    _print_json(
        {
            "package": str(run.package.path),
            "sha256": run.package.manifest.sha256,
            "best_epoch": run.fit.best_epoch + 1,
            "auroc": {code: test[code]["auroc"] for code in recipe.findings},
            "evaluated_on": "test" if "test" in run.metrics else "validation",
            "report": str(run.report_dir),
        }
    )
    return EXIT_OK


def _cmd_bench(args: argparse.Namespace) -> int:
    from diagnostics.bench import BenchConfig, run_bench, summary_lines

    config = BenchConfig.quick_run(args.model) if args.quick else BenchConfig(model=args.model)
    if args.iterations is not None:
        config = dataclasses.replace(config, iterations=args.iterations)
    report = run_bench(config)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    print("\n".join(summary_lines(report)))
    return EXIT_OK


# --- compare: candidate vs current model package on one labelled test set -------------------


def _cmd_compare(args: argparse.Namespace) -> int:
    from diagnostics.compare import compare_on_dataset
    from diagnostics.datasets import parse_option

    options = dict(parse_option(text) for text in args.option)
    comparison = compare_on_dataset(
        args.candidate,
        args.current,
        args.data,
        layout=args.layout,
        split=args.split,
        options=options,
        n_boot=args.boot,
        seed=args.seed,
        threads=args.threads,
        cache_dir=args.cache,
    )
    if args.json:
        args.json.write_text(json.dumps(comparison.to_dict(), indent=2) + "\n")
    print("\n".join(comparison.summary_lines()))
    return EXIT_OK


COMPARE_LAYOUTS = "synth, nih, rsna, chexpert, covid, covidx"
"""Named here rather than imported: the dataset registry pulls in torch, and building the
parser must stay fast for every command."""


def _add_compare_parser(commands: Any) -> None:
    compare = commands.add_parser(
        "compare",
        help="compare a candidate model package with the current one on labelled studies",
        description=(
            "Run CANDIDATE and CURRENT (model packages) on the same labelled studies under\n"
            "--data and compare them per finding they share: AUROC of each with a paired\n"
            "bootstrap 95% interval of the difference, sensitivity and specificity at each\n"
            "package's own operating point, and calibration error (ECE). Prints a verdict per\n"
            "finding and overall (better, not different, worse) with the rule that gave it.\n"
            "Exit status 0 whatever the verdict; 2 on unusable input."
        ),
        epilog=(
            "examples:\n"
            "  diagnostics compare work/my-cxr/package models/cxr-demo --data data/cxr-demo/test\n"
            "  diagnostics compare new/ models/cxr-demo --data /data/chestxray14 --layout nih \\\n"
            "      --json compare.json\n"
            "  diagnostics compare new/ old/ --data /data/chexpert --layout chexpert \\\n"
            "      --option uncertain=ignore"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument("candidate", type=Path, help="the new model package")
    compare.add_argument("current", type=Path, help="the model package it would replace")
    compare.add_argument("--data", type=Path, required=True, help="dataset root (test studies)")
    compare.add_argument(
        "--layout", default="synth", help=f"dataset layout: {COMPARE_LAYOUTS} (default synth)"
    )
    compare.add_argument(
        "--split", choices=("all", "train", "test"), default="test", help="default test"
    )
    compare.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a layout option, e.g. uncertain=ignore (repeatable)",
    )
    compare.add_argument("--json", type=Path, help="write the full comparison as JSON here")
    compare.add_argument(
        "--boot", type=_positive_int, default=2000, help="bootstrap resamples (default 2000)"
    )
    compare.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    compare.add_argument("--threads", type=_positive_int, help="inference threads (default: all)")
    compare.add_argument("--cache", type=Path, help="folder for preprocessed images (reused)")
    compare.set_defaults(handler=_cmd_compare)


# --- end of compare --------------------------------------------------------------------------


# --- feedback export -------------------------------------------------------------------------


def _cmd_feedback_export(args: argparse.Namespace) -> int:
    from diagnostics.service.feedback_folder import export_feedback

    _print_json(export_feedback(args.storage, args.out, args.unreviewed).as_dict())
    return EXIT_OK


def _add_feedback_parser(commands: Any) -> None:
    feedback = commands.add_parser(
        "feedback",
        help="use radiologists' feedback from the review UI",
        description="Work with the feedback radiologists record in the review UI (/ui).",
        epilog="example:\n  diagnostics feedback export --storage diagnostics-data --out fb",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = feedback.add_subparsers(dest="feedback_command", required=True, metavar="ACTION")
    export = actions.add_parser(
        "export",
        help="write feedback as a labelled folder that training reads",
        description=(
            "Write every study with feedback as OUT/study-NNNNN/IM-0001.dcm plus OUT/labels.csv\n"
            "(the `diagnostics synth` layout, read by training recipes). Labels: agree = the\n"
            "model's flag, disagree = its opposite, missed = 1 with the marked location; a\n"
            "finding without a verdict takes the model's flag (label_source_<code> says so)\n"
            "unless --unreviewed skip. The DICOM files keep their patient data: for use inside\n"
            "the hospital (use research-export to share). OUT must not exist."
        ),
        epilog=(
            "examples:\n"
            "  diagnostics feedback export --storage diagnostics-data --out feedback-2024-06\n"
            "  diagnostics feedback export --storage /srv/diagnostics --out fb --unreviewed skip"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    export.add_argument("--storage", type=Path, required=True, help="the service's storage folder")
    export.add_argument("--out", type=Path, required=True, help="output folder (must not exist)")
    export.add_argument(
        "--unreviewed",
        choices=("model", "skip"),
        default="model",
        help="findings without a verdict: take the model's flag (default) or skip the study",
    )
    export.set_defaults(handler=_cmd_feedback_export)


# --- end of feedback export ------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from diagnostics.cli_screen import add_parser as add_screen_parser

    parser = argparse.ArgumentParser(
        prog="diagnostics",
        description="AI pre-screening for radiology: ingest DICOM, generate synthetic studies.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=diagnostics.__version__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress to stderr")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    inspect = commands.add_parser(
        "inspect",
        help="describe one DICOM instance as JSON",
        description="Read, validate and decode one DICOM instance; print a JSON description.",
        epilog="example:\n  diagnostics inspect study-00001/IM-0001.dcm",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    inspect.add_argument("file", type=Path, help="a DICOM file")
    inspect.set_defaults(handler=_cmd_inspect)

    studies = commands.add_parser(
        "studies",
        help="group DICOM files into studies and series",
        description="Read the headers of every file under the paths; group them by UID.",
        epilog="example:\n  diagnostics studies ./incoming ./more/IM-0001.dcm",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    studies.add_argument("paths", nargs="+", type=Path, help="files or folders")
    studies.set_defaults(handler=_cmd_studies)

    synth = commands.add_parser(
        "synth",
        help="generate synthetic chest radiograph studies with ground truth",
        description=(
            "Write synthetic chest X-ray studies (DICOM DX) under --out with OUT/labels.csv.\n"
            "The same --seed always gives the same studies."
        ),
        epilog=(
            "examples:\n"
            "  diagnostics synth --out data/train --studies 2000 --seed 1 --workers 2\n"
            "  diagnostics synth --out /tmp/s --studies 12 --seed 7 --contact-sheet sheet.png"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--studies", type=_positive_int, required=True, help="how many studies")
    synth.add_argument("--seed", type=int, required=True, help="random seed")
    synth.add_argument("--rows", type=int, default=1024, help="image rows (default 1024)")
    synth.add_argument("--columns", type=int, default=1024, help="image columns (default 1024)")
    synth.add_argument(
        "--spacing", type=float, default=0.4, help="pixel spacing in mm (default 0.4)"
    )
    synth.add_argument("--workers", type=_positive_int, default=1, help="processes to use")
    synth.add_argument(
        "--contact-sheet", type=Path, help="also write a PNG contact sheet of 12 studies"
    )
    synth.set_defaults(handler=_cmd_synth)

    add_screen_parser(commands, DEFAULT_MODEL, _positive_int)

    for name, summary, example in (
        (
            "train",
            "train, calibrate, evaluate and export a model package from a recipe",
            "diagnostics train training/cxr-demo.toml --workers 2",
        ),
        (
            "export",
            "re-export the package of a finished (or interrupted) training run",
            "diagnostics export training/cxr-demo.toml --work work/cxr-demo",
        ),
    ):
        command = commands.add_parser(
            name,
            help=summary,
            description=summary[0].upper() + summary[1:] + ".",
            epilog=f"example:\n  {example}",
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        command.add_argument("recipe", type=Path, help="a TOML recipe from training/")
        command.add_argument("--work", type=Path, help="work folder (default work/NAME)")
        command.add_argument("--workers", type=_positive_int, default=1, help="data processes")
        command.add_argument("--quiet", action="store_true", help="no progress bars")
        if name == "train":
            command.add_argument(
                "--resume", action="store_true", help="continue from the last checkpoint"
            )
        else:
            command.set_defaults(resume=True)
        command.set_defaults(handler=_cmd_train)

    bench = commands.add_parser(
        "bench",
        help="measure ONNX Runtime, PyTorch and pipeline throughput on this machine",
        description=(
            "Measure, in one process: ONNX Runtime vs PyTorch eager images/s (the bundled model\n"
            "and a DenseNet-121), GFLOP/s beside a matrix-multiply peak, and DICOM -> result\n"
            "throughput beside model-only throughput. Prints a summary; --json writes the report."
        ),
        epilog=(
            "examples:\n"
            "  diagnostics bench --json bench.json\n"
            "  diagnostics bench --quick --json /tmp/quick.json --model models/cxr-demo"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument("--json", type=Path, help="write the full report as JSON to this file")
    bench.add_argument(
        "--quick", action="store_true", help="a tiny run (seconds) whose numbers mean little"
    )
    bench.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, help=f"model package (default {DEFAULT_MODEL})"
    )
    bench.add_argument(
        "--iterations", type=_positive_int, help="timed rounds per measurement (default 10)"
    )
    bench.set_defaults(handler=_cmd_bench)
    _add_compare_parser(commands)
    _add_feedback_parser(commands)

    from diagnostics.serve import add_parser as add_serve_parser

    add_serve_parser(commands)

    from diagnostics.deid.cli import add_parser as add_research_export_parser

    add_research_export_parser(commands)
    return parser


THIRD_PARTY_LOGGERS = (
    "pydicom",
    "highdicom",
    "pynetdicom",
    "onnxruntime",
    "monai",
    "PIL",
    "torch",
    "py.warnings",
)
"""Libraries that log (and print tracebacks of) failures this library already reports in its
own words; heard only with -v."""


def quiet_third_parties(verbose: bool, keep_tracebacks: bool = False) -> None:
    """Logging for one CLI run: the contract allows one stderr line per error, never a traceback.

    Third-party loggers and Python warnings are silenced unless -v; pydicom resets its logger's
    level when first imported, so it is imported before its level is set.
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
            handler.addFilter(_no_traceback)


def _no_traceback(record: logging.LogRecord) -> bool:
    """Drop the traceback of a logged failure: the one-line message says what went wrong."""
    record.exc_info = None
    record.exc_text = None
    record.stack_info = None
    return True


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
