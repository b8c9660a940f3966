"""What the SR, overlay and presentation state share: identity of the model, the disclaimer, the
source headers they copy, and the one place where highdicom's own errors become `ReportError`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
from highdicom._standard_utils import is_attribute_in_iod  # private: the IOD tables it builds with
from pydicom.dataset import Dataset

import diagnostics
from diagnostics.constants import MANUFACTURER
from diagnostics.errors import ReportError
from diagnostics.i18n import N_
from diagnostics.package import FindingSpec, Manifest, ModelPackage
from diagnostics.reports._header import clean_header
from diagnostics.results import FindingResult

if TYPE_CHECKING:  # imported for types only: the screening package pulls in the ONNX runtime
    from diagnostics.screening.outcome import AnalysedInstance, ScreeningOutcome

DISCLAIMER = N_("AI pre-screening, not for diagnosis")
"""Shown on every output; translated where a language is chosen (`diagnostics.i18n`)."""
_LO_MAX = 64

# Body Part Examined defined terms (PS3.16 Annex L) of structures that are not paired: for these
# dciodvfy wants Laterality absent. For any other part, or none, it wants Laterality present.
UNPAIRED_BODY_PARTS = frozenset(
    {
        "ABDOMEN", "ABDOMENPELVIS", "AORTA", "BRAIN", "CHEST", "CHESTABDOMEN", "CHESTABDPELVIS",
        "COCCYX", "CSPINE", "CTSPINE", "HEAD", "HEADNECK", "HEART", "LSPINE", "LSSPINE", "NECK",
        "PELVIS", "SKULL", "SPINE", "SSPINE", "STERNUM", "TLSPINE", "TSPINE", "WHOLEBODY",
    }
)  # fmt: skip

# What highdicom raises when an argument or a header does not fit the IOD it builds. Caught only
# around highdicom calls, so that callers see one error class with the reason in the message.
_BUILD_FAILURES: tuple[type[Exception], ...] = (ValueError, TypeError, AttributeError, KeyError)


@contextmanager
def building(what: str) -> Iterator[None]:
    """Turn highdicom's failures while building `what` into `ReportError`."""
    try:
        yield
    except ReportError:
        raise
    except _BUILD_FAILURES as exc:
        detail = " ".join(str(exc).split())[:400] or type(exc).__name__
        raise ReportError(f"cannot build the {what}: {detail}") from exc


def require_package(outcome: ScreeningOutcome) -> ModelPackage:
    """The package behind an analysed outcome; anything else has nothing to report."""
    result = outcome.result
    if result.status != "analyzed":
        raise ReportError(
            f"study {result.study_instance_uid} was not analysed (status {result.status!r}); "
            "DICOM outputs are written for analysed studies only"
        )
    if outcome.package is None or not outcome.analysed:
        raise ReportError(
            f"study {result.study_instance_uid}: the outcome lacks the model package or the "
            "analysed instances that the DICOM outputs are built from"
        )
    return outcome.package


def model_label(manifest: Manifest) -> str:
    """`name version`, as it appears on every output."""
    label = f"{manifest.name} {manifest.version}"
    if len(label) > _LO_MAX:
        raise ReportError(
            f"model name and version {label!r} are longer than the {_LO_MAX} characters a "
            "DICOM LO value holds; shorten the package name or version"
        )
    return label


def software_versions(manifest: Manifest) -> list[str]:
    """General Equipment Software Versions: the model, its exact file, and this library.

    The sha256 (64 characters, the most an LO value holds) is not last: the space that pads an
    odd-length element would be counted against it, and pydicom would warn on every read.
    """
    return [model_label(manifest), manifest.sha256, f"{MANUFACTURER} {diagnostics.__version__}"]


def fit_lo(text: str) -> str:
    """A description shortened to fit a DICOM LO value (64 characters)."""
    return text if len(text) <= _LO_MAX else text[: _LO_MAX - 3] + "..."


def source_header(item: AnalysedInstance) -> Dataset:
    """A cleaned copy of the source header (`clean_header`) for highdicom to copy from."""
    return clean_header(item.image.info.dataset)


def spec_for(manifest: Manifest, code: str) -> FindingSpec:
    for spec in manifest.findings:
        if spec.code == code:
            return spec
    raise ReportError(
        f"finding {code!r} is not one of the model's findings {manifest.finding_codes}"
    )


def instance_for(outcome: ScreeningOutcome, finding: FindingResult) -> AnalysedInstance:
    try:
        return outcome.instance(finding.sop_instance_uid)
    except KeyError:
        raise ReportError(
            f"finding {finding.code!r} names instance {finding.sop_instance_uid}, which is not "
            "among the analysed instances of the outcome"
        ) from None


def findings_on(outcome: ScreeningOutcome, item: AnalysedInstance) -> list[FindingResult]:
    """The study's findings whose evidence is this instance, in the result's order."""
    uid = item.image.uids.sop_instance_uid
    return [f for f in outcome.result.findings if f.sop_instance_uid == uid]


def checked_bbox(finding: FindingResult, item: AnalysedInstance) -> tuple[int, int, int, int]:
    """The finding's box, refused when it does not lie within its image."""
    if finding.bbox is None:
        raise ReportError(f"finding {finding.code!r} has no box")
    x0, y0, x1, y1 = finding.bbox
    rows, cols = item.image.info.rows, item.image.info.columns
    if x1 > cols or y1 > rows:
        raise ReportError(
            f"finding {finding.code!r}: box {finding.bbox} lies outside the {cols} x {rows} image"
        )
    return x0, y0, x1, y1


def rectangle(bbox: tuple[int, int, int, int]) -> np.ndarray:
    """Closed POLYLINE (column, row) points of a box, in DICOM image coordinates.

    DICOM puts (0, 0) at the top left corner of the top left pixel, so an end-exclusive pixel
    box (x0, y0, x1, y1) is exactly the rectangle between those corner coordinates.
    """
    x0, y0, x1, y1 = (float(v) for v in bbox)
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]], dtype=np.float32)


def frame_numbers(item: AnalysedInstance) -> list[int] | None:
    """Referenced Frame Number (1-based) of the analysed frame, or None.

    None for a single frame, and for an instance whose IOD has no frames (a Secondary Capture or
    DX that carries Number of Frames anyway): references to it may not name a frame, so they
    point at the instance as a whole.
    """
    info = item.image.info
    if info.frames > 1 and is_attribute_in_iod("NumberOfFrames", info.uids.sop_class_uid):
        return [item.frame + 1]
    return None


def notice_text(manifest: Manifest) -> str:
    """The burned-in and presentation-state notice: what this is and which model made it."""
    return f"{DISCLAIMER} - {model_label(manifest)}"


def finding_label(finding: FindingResult) -> str:
    return f"{finding.display} {finding.probability:.2f}"


def shown_findings(outcome: ScreeningOutcome, item: AnalysedInstance) -> list[FindingResult]:
    """Whose heatmap the overlay shows: the flagged findings of this instance, or else the most
    probable one, so that an overlay never shows nothing without saying why."""
    findings = findings_on(outcome, item)
    flagged = [f for f in findings if f.flagged]
    if flagged:
        return flagged
    return [max(findings, key=lambda f: f.probability)] if findings else []


def copy_series_anatomy(header: Dataset, target: Dataset) -> None:
    """Body Part Examined and Laterality of the source onto a new series.

    Laterality is type 2C, required for a paired body part. dciodvfy can only tell from Body
    Part Examined, so the two travel together: absent for a known unpaired part (CHEST), present
    (the source's R or L, else empty) for a paired one or when the body part is not known.
    """
    body_part = str(header.get("BodyPartExamined", "") or "")
    if body_part:
        target.BodyPartExamined = body_part
        if body_part in UNPAIRED_BODY_PARTS:
            return
    target.Laterality = ""
    for keyword in ("Laterality", "ImageLaterality"):
        value = str(header.get(keyword, "") or "")
        if value in ("R", "L"):
            target.Laterality = value
            return
