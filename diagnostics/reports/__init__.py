"""DICOM outputs of a screened study: a TID 1500 SR, burned-in overlays, presentation states.

`write_reports` is what the CLI and the service call; the builders are public for callers that
send datasets without writing files (STOW-RS, C-STORE).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from pydicom import config
from pydicom.dataset import Dataset
from pydicom.uid import UID, generate_uid

from diagnostics.durable import save_file
from diagnostics.errors import ReportError
from diagnostics.reports._common import DISCLAIMER, findings_on, require_package
from diagnostics.reports.heatmap import heatmap
from diagnostics.reports.overlay import (
    build_overlay,
    build_presentation_state,
    render_overlay,
    window_to_uint8,
)
from diagnostics.reports.sr import build_sr
from diagnostics.results import OutputFailure, OutputKind

if TYPE_CHECKING:
    from diagnostics.screening.outcome import AnalysedInstance, ScreeningOutcome

__all__ = [
    "DISCLAIMER",
    "WrittenReports",
    "build_overlay",
    "build_presentation_state",
    "build_sr",
    "heatmap",
    "render_overlay",
    "window_to_uint8",
    "write_reports",
]

log = logging.getLogger(__name__)

SR_FILE = "SR.dcm"


def _instances_with_findings(outcome: ScreeningOutcome) -> list[AnalysedInstance]:
    """Analysed instances that are the evidence of at least one finding, in analysed order."""
    return [item for item in outcome.analysed if findings_on(outcome, item)]


def _check_study(outcome: ScreeningOutcome) -> str:
    study_uid = outcome.result.study_instance_uid
    # Validation is this check's job: pydicom's own would only add a warning per bad value.
    if not UID(study_uid, validation_mode=config.IGNORE).is_valid:
        raise ReportError(
            f"study instance UID {study_uid[:80]!r} is not a valid DICOM UID; refusing to "
            "write reports for it"
        )
    for item in outcome.analysed:
        if item.image.uids.study_instance_uid != study_uid:
            raise ReportError(
                f"instance {item.image.uids.sop_instance_uid} belongs to study "
                f"{item.image.uids.study_instance_uid}, not to {study_uid}"
            )
    return study_uid


def _save(dataset: Dataset, path: Path) -> Path:
    """Publish durably: an outbox row may point at the file as soon as this returns."""
    try:
        save_file(path, partial(dataset.save_as, enforce_file_format=True))
    except OSError as exc:
        raise ReportError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
    return path


@dataclass(frozen=True)
class WrittenReports:
    """What `write_reports` produced: the files written and the outputs that could not be."""

    paths: list[Path] = field(default_factory=list)
    failures: list[OutputFailure] = field(default_factory=list)


# What a builder can raise on a header it did not foresee (highdicom and pydicom validate with
# these): one output fails, named, while the others and the result still stand.
BUILDER_FAILURES = (ReportError, ValueError, TypeError, AttributeError, IndexError, KeyError)


def _build(
    kind: OutputKind, source: str | None, build: Callable[[], Dataset]
) -> Dataset | OutputFailure:
    try:
        return build()
    except BUILDER_FAILURES as exc:
        message = str(exc) if isinstance(exc, ReportError) else f"{type(exc).__name__}: {exc}"
        # The type only: a builder's message may quote header values (patient data).
        log.error("%s output not built (%s)", kind, type(exc).__name__)
        return OutputFailure(output=kind, sop_instance_uid=source, reason=message[:500] or kind)


def write_reports(outcome: ScreeningOutcome, out_dir: Path) -> WrittenReports:
    """Write the DICOM outputs of an analysed outcome under `out_dir/<study uid>/`.

    Writes `SR.dcm`, then `OV-0001.dcm` and `PR-0001.dcm` (overlay and presentation state) for
    each analysed instance that some finding comes from, numbered in analysis order; file names
    never come from DICOM text. Each kind is one new series. Nothing for an outcome that was not
    analysed. Each output is built on its own: one that cannot be built is returned as a failure
    and the rest are still written. Raises `ReportError` only when nothing can be written at all
    (an outcome that contradicts itself, a folder that cannot be created or written).
    """
    if outcome.result.status != "analyzed":
        return WrittenReports()
    require_package(outcome)
    study_uid = _check_study(outcome)
    instances = _instances_with_findings(outcome)
    if not instances:
        raise ReportError(
            f"study {study_uid}: no finding names an analysed instance, so there is nothing to "
            "draw an overlay on"
        )
    built: list[tuple[Dataset | OutputFailure, str]] = [
        (_build("sr", None, lambda: build_sr(outcome, series_uid=generate_uid())), SR_FILE)
    ]
    overlay_series, state_series = generate_uid(), generate_uid()
    for number, item in enumerate(instances, start=1):
        source = item.image.uids.sop_instance_uid
        overlay = _build(
            "overlay",
            source,
            partial(
                build_overlay, outcome, item, series_uid=overlay_series, instance_number=number
            ),
        )
        state = _build(
            "presentation_state",
            source,
            partial(
                build_presentation_state,
                outcome,
                item,
                series_uid=state_series,
                instance_number=number,
            ),
        )
        built += [(overlay, f"OV-{number:04d}.dcm"), (state, f"PR-{number:04d}.dcm")]
    written = WrittenReports(failures=[b for b, _ in built if isinstance(b, OutputFailure)])
    datasets = [(b, name) for b, name in built if isinstance(b, Dataset)]
    if not datasets:
        return written
    folder = Path(out_dir) / study_uid
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"{folder}: cannot be created ({exc.strerror or exc})") from exc
    written.paths.extend(_save(dataset, folder / name) for dataset, name in datasets)
    return written
