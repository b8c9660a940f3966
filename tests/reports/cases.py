"""Real screening outcomes for the report tests, built from synthetic DICOM studies.

Sources are written by the synth generator (`make_study` + `build_dx`, with the photometric
interpretation and transfer syntax chosen per case) and read back through the normal reader; the
model package is the bundled one. Only the model's outputs are made up: probabilities and class
activation maps with a Gaussian blob at a known place, and the box that blob implies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.uid import UID, ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

from diagnostics.dicom import DicomImage
from diagnostics.package import ModelPackage
from diagnostics.results import FindingResult, InstanceResult, ModelRef, StudyResult
from diagnostics.screening.outcome import AnalysedInstance, ScreeningOutcome
from diagnostics.synth.dx import build_dx
from diagnostics.synth.study import SynthConfig, make_study

SIZE = 256
GRID = 20
CELL = SIZE / GRID
BLOB = (6.0, 5.0)
"""Grid (row, column) of the nodule blob's centre: upper left of the image."""
BLOB_BOX = (
    int((BLOB[1] - 1.5) * CELL),
    int((BLOB[0] - 1.5) * CELL),
    int((BLOB[1] + 2.5) * CELL),
    int((BLOB[0] + 2.5) * CELL),
)
"""(x0, y0, x1, y1) around the blob, as `interpret.cam_box` would trace it."""
PROBABILITIES = {"nodule": 0.93, "consolidation": 0.21, "cardiomegaly": 0.35}


@dataclass(frozen=True)
class Case:
    outcome: ScreeningOutcome
    sources: tuple[Path, ...]
    package: ModelPackage


def write_source(
    folder: Path,
    index: int,
    photometric: str,
    syntax: UID = ExplicitVRLittleEndian,
    instance: int = 1,
) -> Path:
    """One synthetic DX radiograph of study `index`, written as the given photometric and
    transfer syntax; `instance` > 1 adds further instances to the same study and series."""
    config = SynthConfig(rows=SIZE, columns=SIZE)
    _, pixels, patient, acquisition = make_study(11, index, index, config)
    acquisition = dataclasses.replace(acquisition, photometric=photometric, transfer_syntax=syntax)
    if instance > 1:
        uid = generate_uid(entropy_srcs=[acquisition.sop_instance_uid, str(instance)])
        acquisition = dataclasses.replace(acquisition, sop_instance_uid=str(uid))
    path = folder / f"source-{index}-{instance}.dcm"
    build_dx(pixels, patient, acquisition).save_as(path, enforce_file_format=True)
    return path


def blob_cams(package: ModelPackage) -> np.ndarray:
    """(K, 20, 20) logit CAMs: a strong blob for the nodule, weak flat maps for the rest."""
    yy, xx = np.mgrid[0:GRID, 0:GRID].astype(np.float32)
    blob = np.exp(-((yy - BLOB[0]) ** 2 + (xx - BLOB[1]) ** 2) / (2 * 1.2**2))
    cams = np.full((len(package.manifest.findings), GRID, GRID), -4.0, dtype=np.float32)
    for k, spec in enumerate(package.manifest.findings):
        if spec.code == "nodule":
            cams[k] = -4.0 + 10.0 * blob
    return cams


def make_outcome(
    image: DicomImage, package: ModelPackage, probabilities: dict[str, float]
) -> ScreeningOutcome:
    manifest = package.manifest
    uid = image.uids.sop_instance_uid
    findings = []
    for spec in manifest.findings:
        p = probabilities[spec.code]
        threshold = manifest.operating_points[spec.code].threshold
        flagged = p >= threshold
        findings.append(
            FindingResult(
                code=spec.code,
                display=spec.display,
                probability=p,
                threshold=threshold,
                flagged=flagged,
                sop_instance_uid=uid,
                bbox=BLOB_BOX if flagged and spec.code == "nodule" else None,
            )
        )
    result = StudyResult(
        study_instance_uid=image.uids.study_instance_uid,
        status="analyzed",
        priority="urgent" if any(f.flagged for f in findings) else "routine",
        model=ModelRef(name=manifest.name, version=manifest.version, sha256=manifest.sha256),
        findings=findings,
        instances=[InstanceResult(sop_instance_uid=uid, status="analyzed", appearance_score=0.2)],
    )
    analysed = AnalysedInstance(
        image=image,
        frame=0,
        probabilities=dict(probabilities),
        cams=blob_cams(package),
        appearance_score=0.2,
    )
    return ScreeningOutcome(result=result, analysed=(analysed,), package=package)


SOURCES = {
    "mono2": ("MONOCHROME2", ExplicitVRLittleEndian),
    "mono1": ("MONOCHROME1", ExplicitVRLittleEndian),
    "j2k": ("MONOCHROME2", JPEG2000Lossless),
}


@dataclass(frozen=True)
class Written:
    """`write_reports` output for one case, read back."""

    case: Case
    paths: list[Path]
    sr: Path
    overlay: Path
    state: Path


def source_header(case: Case) -> Dataset:
    return case.outcome.analysed[0].image.info.dataset


def texts_in(dataset: Dataset) -> list[str]:
    """Every TEXT value and UID value in an SR content tree."""
    found: list[str] = []
    for item in dataset.get("ContentSequence", []):
        for keyword in ("TextValue", "UID"):
            if keyword in item:
                found.append(str(item.get(keyword)))
        found += texts_in(item)
    return found


def report_of(path: Path) -> hd.sr.MeasurementReport:
    """The TID 1500 content of an SR file, read back by highdicom."""
    sr = hd.sr.srread(path)
    assert isinstance(sr, hd.sr.ComprehensiveSR)
    report = sr.content
    assert isinstance(report, hd.sr.MeasurementReport)
    return report
