"""Stage 5, interpret: model outputs -> findings -> the study's `ScreeningOutcome`.

A study's finding is its strongest evidence: the highest calibrated probability over the
instances that were analysed, flagged at the package's operating point, located on the instance
it came from (a box from the CAM). `interpret` assembles the StudyResult: `analyzed` only when
the model ran on the study; `not_analyzed` when every image was refused; `failed` when any image
failed, with the images that were not reported saying so.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np
from scipy import ndimage

from diagnostics.dicom.grouping import Study
from diagnostics.package import Manifest, ModelPackage
from diagnostics.results import (
    FindingResult,
    InstanceResult,
    ModelRef,
    Priority,
    StudyResult,
    localised,
)
from diagnostics.screening.outcome import AnalysedInstance, ScreeningOutcome
from diagnostics.screening.stages import Inferred, SourceInstance, failed_instance

CAM_UPSAMPLE = 4
"""The CAM grid is refined this many times (bilinear) before the box is traced."""
REGION_LEVEL = 0.6
"""A box covers the connected region around the CAM peak above this fraction of its range.
Chosen on 300 held-out synthetic studies with the bundled model: at 0.6 the boxes of flagged
nodules hold the true centre 96 % of the time (median box 1.6 % of the image), and flagged
consolidation boxes overlap the true region with a median IoU of 0.42 (0.5 gives 0.50 for
consolidation but nodule boxes a quarter of the image; 0.7 misses 14 % of nodule centres)."""
INTERPRET_FAILURES: tuple[type[BaseException], ...] = (
    ValueError,
    ArithmeticError,
    IndexError,
    KeyError,
    TypeError,
)
"""What numpy and the interpretation raise on model outputs they cannot use (a wrong shape, a
NaN that slipped through): that study fails, the others in the batch stand."""
NOT_REPORTED = "not reported because another image of this study failed"


def probabilities(manifest: Manifest, logits: np.ndarray) -> np.ndarray:
    """(N, K) logits -> (N, K) calibrated probabilities, per finding's calibration."""
    columns = [
        manifest.calibration[spec.code].probability(logits[:, k])
        for k, spec in enumerate(manifest.findings)
    ]
    return np.stack(columns, axis=1) if columns else np.zeros_like(logits, dtype=np.float64)


def cam_box(cam: np.ndarray, rows: int, columns: int) -> tuple[int, int, int, int]:
    """(h, w) CAM over the whole image -> (x0, y0, x1, y1) in image pixels, end exclusive.

    The region is the connected component that holds the peak above 60 % of the way from the
    map's minimum to its maximum; a flat map gives the whole image.
    """
    # grid_mode: each CAM cell is a block of the image (as the heatmap draws it), so the fine
    # grid's blocks map straight back to pixels below.
    fine = ndimage.zoom(
        cam.astype(np.float64), CAM_UPSAMPLE, order=1, mode="nearest", grid_mode=True
    )
    low, high = float(fine.min()), float(fine.max())
    if not high > low:
        return (0, 0, columns, rows)
    mask = fine >= low + REGION_LEVEL * (high - low)
    labels, _ = ndimage.label(mask)
    peak = np.unravel_index(int(np.argmax(fine)), fine.shape)
    ys, xs = np.nonzero(labels == labels[peak])
    h, w = fine.shape
    x0 = int(np.floor(xs.min() * columns / w))
    x1 = int(np.ceil((xs.max() + 1) * columns / w))
    y0 = int(np.floor(ys.min() * rows / h))
    y1 = int(np.ceil((ys.max() + 1) * rows / h))
    return (max(0, x0), max(0, y0), min(columns, x1), min(rows, y1))


def localised_box(cam: np.ndarray, rows: int, columns: int) -> tuple[int, int, int, int] | None:
    """The CAM's box when it localises the finding, else None ("not localised": activation
    spread over more than `results.MAX_BOX_SHARE` of the image points nowhere)."""
    box = cam_box(cam, rows, columns)
    return box if localised(box, rows, columns) else None


def study_findings(
    manifest: Manifest,
    sop_uids: Sequence[str],
    probs: np.ndarray,
    cams: np.ndarray,
    sizes: Sequence[tuple[int, int]],
) -> list[FindingResult]:
    """Per finding, the analysed instance with the highest probability decides.

    `probs` (N, K) and `cams` (N, K, h, w) are for the N analysed instances of one study, whose
    SOP Instance UIDs and (rows, columns) are `sop_uids` and `sizes`.
    """
    if not len(sop_uids):
        return []
    findings = []
    for k, spec in enumerate(manifest.findings):
        best = int(np.argmax(probs[:, k]))
        probability = float(probs[best, k])
        threshold = manifest.operating_points[spec.code].threshold
        flagged = probability >= threshold
        rows, columns = sizes[best]
        findings.append(
            FindingResult(
                code=spec.code,
                display=spec.display,
                probability=probability,
                threshold=threshold,
                flagged=flagged,
                sop_instance_uid=sop_uids[best],
                bbox=localised_box(cams[best, k], rows, columns) if flagged else None,
            )
        )
    return findings


def model_ref(package: ModelPackage) -> ModelRef:
    """How a result names the model that produced it."""
    manifest = package.manifest
    return ModelRef(name=manifest.name, version=manifest.version, sha256=manifest.sha256)


def interpret(inferred: Inferred, package: ModelPackage) -> ScreeningOutcome:
    """The study's outcome; output that cannot be interpreted fails the study, never hides."""
    try:
        return _assemble(inferred, package)
    except INTERPRET_FAILURES as exc:
        reason = f"the model's output could not be interpreted ({type(exc).__name__}: {exc})"
        settled = dict(inferred.settled)
        for image in inferred.images:
            settled[image.uid] = failed_instance(image.uid, reason)
        return _failed(replace(inferred, settled=settled, failure=reason), package)


def _assemble(inferred: Inferred, package: ModelPackage) -> ScreeningOutcome:
    if inferred.failure is not None:
        return _failed(inferred, package)
    study = inferred.study
    if not inferred.images:
        instances = _instances(study, inferred.settled)
        return ScreeningOutcome(
            StudyResult(
                study_instance_uid=study.study_instance_uid,
                status="not_analyzed",
                reason=_not_analysed_reason(instances),
                model=model_ref(package),
                instances=instances,
            )
        )
    manifest = package.manifest
    pairs = list(zip(inferred.images, inferred.outputs, strict=True))
    uids = [image.uid for image, _ in pairs]
    logits = np.stack([output.logits for _, output in pairs])
    cams = np.stack([output.cams for _, output in pairs])
    probs = probabilities(manifest, logits)
    settled = dict(inferred.settled)
    analysed = []
    for index, (image, _) in enumerate(pairs):
        settled[image.uid] = InstanceResult(
            sop_instance_uid=image.uid, status="analyzed", appearance_score=image.appearance
        )
        analysed.append(
            AnalysedInstance(
                image=image.image,
                frame=0,
                probabilities={
                    spec.code: float(probs[index, k]) for k, spec in enumerate(manifest.findings)
                },
                cams=cams[index],
                appearance_score=image.appearance or 0.0,
            )
        )
    findings = study_findings(
        manifest, uids, probs, cams, [(a.image.info.rows, a.image.info.columns) for a in analysed]
    )
    result = StudyResult(
        study_instance_uid=study.study_instance_uid,
        status="analyzed",
        priority=study_priority(manifest, findings),
        model=model_ref(package),
        findings=findings,
        instances=_instances(study, settled),
    )
    return ScreeningOutcome(result, tuple(analysed), package)


def study_priority(manifest: Manifest, findings: Sequence[FindingResult]) -> Priority:
    """Urgent when a flag of a finding whose `on_flag` is urgent reaches its `urgent_threshold`
    (any flag when none is set); otherwise routine, flags of routine findings included."""
    specs = {spec.code: spec for spec in manifest.findings}
    urgent = any(specs[f.code].raises_priority(f.probability, f.flagged) for f in findings)
    return "urgent" if urgent else "routine"


def _failed(inferred: Inferred, package: ModelPackage) -> ScreeningOutcome:
    """A failed study: its images that were prepared but not failed are not reported."""
    settled = dict(inferred.settled)
    for image in inferred.images:
        settled.setdefault(
            image.uid,
            InstanceResult(sop_instance_uid=image.uid, status="not_analyzed", reason=NOT_REPORTED),
        )
    instances = _instances(inferred.study, settled)
    failed = sum(1 for r in instances if r.status == "failed")
    return ScreeningOutcome(
        StudyResult(
            study_instance_uid=inferred.study.study_instance_uid,
            status="failed",
            reason=f"{failed} of {len(instances)} images failed: {inferred.failure}",
            model=model_ref(package),
            instances=instances,
        )
    )


def _instances(
    study: Study[SourceInstance], settled: Mapping[str, InstanceResult]
) -> list[InstanceResult]:
    return [settled[item.uids.sop_instance_uid] for item in study.instances]


def _not_analysed_reason(instances: Sequence[InstanceResult]) -> str:
    reasons = list(dict.fromkeys(r.reason for r in instances if r.reason))
    if not reasons:
        return "the study holds no images"
    if len(instances) == 1:
        return reasons[0]
    return f"none of the {len(instances)} images is in scope: " + "; ".join(reasons)
