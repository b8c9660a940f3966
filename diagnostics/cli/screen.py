"""`diagnostics screen`: a folder of whatever a user has to results for every study in it.

Folders as people really have them hold more than images: the `labels.csv` that `synth` writes,
notes, hidden files, a DICOMDIR index. Files that are plainly not DICOM are *skipped* (listed in
the summary, never counted as failures); a DICOMDIR is read as the index it is, its referenced
files screened in its place. A file that claims to be DICOM (a `.dcm` name, a 'DICM' marker) and
cannot be used is *rejected*, which the exit status reports.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from diagnostics.cli.common import EXIT_OK, positive_int
from diagnostics.constants import BUNDLED_MODEL, ENGINE_CHOICES
from diagnostics.durable import write_file
from diagnostics.errors import ConfigurationError, DiagnosticsError, InputError, NotDicomError

if TYPE_CHECKING:
    from diagnostics.cli.common import Commands
    from diagnostics.screening import ScreeningOutcome

EXIT_INCOMPLETE = 1
DICOM_SUFFIXES = frozenset({".dcm", ".dicom", ".dic"})
"""Names that claim DICOM: such a file that is not DICOM is rejected, not skipped."""
MEDIA_STORAGE_DIRECTORY = "1.2.840.10008.1.3.10"
_PREAMBLE = 128

EXIT_STATUS_HELP = (
    "Exit status: 0 when every study was screened (analysed, or not analysed with a reason);\n"
    "1 when a study failed, a DICOM output could not be written or a file was rejected (the\n"
    "results say which and why); 2 on bad arguments or when no files were found."
)


@dataclass
class Inputs:
    """What `screen` will read, and what it set aside before reading, with why."""

    files: list[Path] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    rejected: list[tuple[Path, InputError]] = field(default_factory=list)
    indexes: list[Path] = field(default_factory=list)


def _has_marker(path: Path) -> bool:
    try:
        with path.open("rb") as stream:
            head = stream.read(_PREAMBLE + 4)
    except OSError:
        return False
    return head[_PREAMBLE:] == b"DICM"


def _is_dicomdir(path: Path) -> bool:
    if path.name.upper() == "DICOMDIR":
        return True
    if not _has_marker(path):
        return False
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        meta = pydicom.filereader.read_file_meta_info(path)
    except (InvalidDicomError, OSError, ValueError, EOFError):
        return False  # the reader says what is wrong with it later
    return str(meta.get("MediaStorageSOPClassUID", "")) == MEDIA_STORAGE_DIRECTORY


def _read_dicomdir(path: Path, inputs: Inputs) -> None:
    """Add the files a DICOMDIR references; a broken index or a missing file is rejected."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.fileset import FileSet

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            fileset = FileSet(pydicom.dcmread(path))
        referenced = [Path(instance.path) for instance in fileset]
    except (InvalidDicomError, OSError, ValueError, KeyError, AttributeError, TypeError) as exc:
        inputs.rejected.append((path, InputError(f"{path}: not a usable DICOMDIR ({exc})")))
        return
    inputs.indexes.append(path)
    # pydicom drops a record whose file is missing with a warning; a lost file must be named.
    for warning in caught:
        message = str(warning.message)
        if "does not exist: " in message:
            lost = Path(message.rsplit("does not exist: ", 1)[1])
            inputs.rejected.append((lost, InputError(f"{lost}: listed in {path} but no such file")))
    for file in referenced:
        if file.is_file():
            inputs.files.append(file)
        else:
            inputs.rejected.append((file, InputError(f"{file}: listed in {path} but no such file")))


def gather(paths: Sequence[Path]) -> Inputs:
    """Files to screen under `paths`, DICOMDIRs expanded, each file once."""
    from diagnostics.dicom import iter_files

    inputs = Inputs()
    plain: list[Path] = []
    for path in iter_files(paths):
        if _is_dicomdir(path):
            _read_dicomdir(path, inputs)
        else:
            plain.append(path)
    seen = {file.resolve() for file in inputs.files}
    for path in plain:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            inputs.files.append(path)
    return inputs


def plainly_not_dicom(path: str, error: InputError) -> bool:
    """A file without a 'DICM' marker that the reader cannot parse, and whose name does not
    claim DICOM: a labels.csv, a note, a picture. Skipped, not rejected."""
    if not isinstance(error, NotDicomError):
        return False
    file = Path(path)
    return file.suffix.lower() not in DICOM_SUFFIXES and not _has_marker(file)


def run(args: argparse.Namespace) -> int:
    from diagnostics.screening import ScreenBatch, Screener, failed_batch

    inputs = gather(args.paths)
    if not inputs.files and not inputs.rejected:
        raise ConfigurationError(f"no files found under {', '.join(map(str, args.paths))}")
    try:
        screener = Screener.load(
            args.model, threads=args.threads, max_batch=args.batch, engine=args.engine
        )
    except DiagnosticsError as exc:
        # Nothing can be analysed, but every study still gets a result that says why.
        batch: ScreenBatch = failed_batch(inputs.files, f"the model could not be loaded: {exc}")
    else:
        batch = screener.screen(inputs.files)
    args.out.mkdir(parents=True, exist_ok=True)
    skipped = [(str(p), why) for p, why in inputs.skipped]
    refused = [(str(p), exc) for p, exc in inputs.rejected]
    for item in batch.rejected:
        if plainly_not_dicom(item.source, item.error):
            skipped.append((item.source, str(item.error)))
        else:
            refused.append((item.source, item.error))
    results = args.out / "results.jsonl"
    # Every study's result is on disk before any output is built, so nothing a builder does
    # can lose it; the file is rewritten once the outputs have added their failures.
    _write_lines(results, [o.result.to_json() for o in batch.outcomes])
    outputs: list[str] = []
    outcomes = list(batch.outcomes)
    if not args.no_dicom:
        outcomes = [_write_outputs(outcome, args.out, outputs) for outcome in outcomes]
        _write_lines(results, [o.result.to_json() for o in outcomes])
    rejected = [
        json.dumps({"file": source, "error": type(exc).__name__, "message": str(exc)})
        for source, exc in refused
    ]
    _write_lines(args.out / "rejected.jsonl", rejected)
    for line in rejected:
        print(f"rejected: {line}", file=sys.stderr)
    counts = {s: 0 for s in ("analyzed", "not_analyzed", "failed")}
    for outcome in outcomes:
        counts[outcome.result.status] += 1
    output_failures = sum(len(o.result.output_failures) for o in outcomes)
    summary: dict[str, Any] = {
        "studies": len(outcomes),
        **counts,
        "urgent": sum(1 for o in outcomes if o.result.priority == "urgent"),
        "rejected_files": len(rejected),
        "skipped_files": [{"file": source, "why": why} for source, why in skipped],
        "dicomdir": [str(p) for p in inputs.indexes],
        "output_failures": output_failures,
        "results": str(results),
        "dicom_outputs": outputs,
        "seconds": {k: round(v, 3) for k, v in batch.stage_seconds.items()},
    }
    json.dump(summary, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_INCOMPLETE if counts["failed"] or rejected or output_failures else EXIT_OK


def _write_outputs(outcome: ScreeningOutcome, out: Path, written: list[str]) -> ScreeningOutcome:
    """Write one study's DICOM outputs; what cannot be built is named in its result, and never
    stops the other studies' outputs or results."""
    from diagnostics.reports import write_reports
    from diagnostics.results import OutputFailure
    from diagnostics.screening import with_output_failures

    if outcome.result.status != "analyzed":
        return outcome
    try:
        reports = write_reports(outcome, out)
    except DiagnosticsError as exc:
        return with_output_failures(outcome, [OutputFailure(output="sr", reason=str(exc))])
    written.extend(str(p) for p in reports.paths)
    return with_output_failures(outcome, reports.failures) if reports.failures else outcome


def _write_lines(path: Path, lines: Sequence[str]) -> None:
    """Write a JSON-lines file whole or not at all (a reader never sees half a result)."""
    write_file(path, "".join(line + "\n" for line in lines).encode("utf-8"))


def add_parser(commands: Commands) -> None:
    screen = commands.add_parser(
        "screen",
        help="screen DICOM studies with a model package",
        description=(
            "Group the files under PATH into studies, screen each with the model and write\n"
            "OUT/results.jsonl (one StudyResult per line), OUT/rejected.jsonl (files that are\n"
            "not usable DICOM) and, per analysed study, a DICOM SR, overlay images and\n"
            "presentation states under OUT/<study UID>/.\n\n"
            "A DICOMDIR is read as an index: the files it references are screened. Files that\n"
            "are plainly not DICOM (no 'DICM' marker, unreadable, not named .dcm: labels.csv,\n"
            "notes) are skipped and listed as skipped_files in the summary; hidden files are\n"
            "ignored. Third-party libraries stay quiet unless -v.\n\n" + EXIT_STATUS_HELP
        ),
        epilog=(
            "examples:\n"
            "  diagnostics screen incoming/ --out results/\n"
            "  diagnostics screen /media/cdrom/DICOMDIR --out results/\n"
            "  diagnostics screen a.dcm b.dcm --out results/ --model models/cxr-demo --no-dicom"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    screen.add_argument("paths", nargs="+", type=Path, help="DICOM files, folders or DICOMDIRs")
    screen.add_argument("--out", type=Path, required=True, help="output folder")
    screen.add_argument(
        "--model", type=Path, default=BUNDLED_MODEL, help=f"model package (default {BUNDLED_MODEL})"
    )
    screen.add_argument("--threads", type=positive_int, help="inference threads (default: all)")
    screen.add_argument("--batch", type=positive_int, default=16, help="images per model call")
    screen.add_argument(
        "--engine",
        choices=ENGINE_CHOICES,
        default="onnxruntime",
        help="inference runtime (openvino only after a parity check; auto: the faster here)",
    )
    screen.add_argument("--no-dicom", action="store_true", help="write only the JSON results")
    screen.set_defaults(handler=run)
