"""Generate synthetic chest radiograph studies with ground truth: DICOM files plus labels.csv.

The folder is a labelled folder (`diagnostics.datasets.labelled` owns its contract).

Every study is a pure function of (seed, index): generating 10 studies gives the first 10 of a
100-study run, and studies can be made in parallel processes without changing the result.
Some patients have more than one study, so that splits by patient are meaningful.
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from diagnostics.datasets.labelled import FINDING_CODES, LABEL_COLUMNS, LABELS_FILE, write_labels
from diagnostics.synth.anatomy import Geometry, Habitus, render_chest, sample_habitus
from diagnostics.synth.dx import COMPRESSED_SYNTAXES, Acquisition, Patient, build_dx
from diagnostics.synth.exposure import expose
from diagnostics.synth.findings import (
    ConsolidationTruth,
    NoduleTruth,
    add_consolidation,
    add_nodule,
    sample_nodule_diameter_mm,
)

NORMAL_CTR = (0.36, 0.48)
ENLARGED_CTR = (0.53, 0.68)
"""Cardiothoracic ratios drawn for normal and enlarged hearts; the gap keeps labels unambiguous."""


@dataclass(frozen=True)
class SynthConfig:
    """What to generate. Prevalences are per finding and independent of each other."""

    rows: int = 1024
    columns: int = 1024
    spacing_mm: float = 0.4
    nodule_prevalence: float = 0.3
    consolidation_prevalence: float = 0.25
    cardiomegaly_prevalence: float = 0.25
    ap_fraction: float = 0.3
    monochrome1_fraction: float = 0.3
    compressed_fraction: float = 0.25
    repeat_patient_fraction: float = 0.15
    """Share of studies that belong to a patient who already had an earlier study."""

    def __post_init__(self) -> None:
        if self.rows < 64 or self.columns < 64:
            raise ValueError("rows and columns must be at least 64")
        if not 0.05 <= self.spacing_mm <= 5.0:
            raise ValueError("spacing_mm must be between 0.05 and 5.0")
        for name, value in asdict(self).items():
            if name.endswith(("_prevalence", "_fraction")) and not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1, not {value}")


@dataclass(frozen=True)
class StudyTruth:
    """What was generated for one study: the row of labels.csv."""

    study_instance_uid: str
    patient_id: str
    view: str
    file: str
    ctr: float
    photometric_interpretation: str
    transfer_syntax: str
    nodule: NoduleTruth | None = None
    consolidation: ConsolidationTruth | None = None
    findings: dict[str, int] = field(default_factory=dict)

    def label_row(self) -> dict[str, str]:
        row: dict[str, str] = {name: "" for name in LABEL_COLUMNS}
        row.update(
            study_instance_uid=self.study_instance_uid,
            patient_id=self.patient_id,
            view=self.view,
            file=self.file,
            ctr=f"{self.ctr:.4f}",
            photometric_interpretation=self.photometric_interpretation,
            transfer_syntax=self.transfer_syntax,
        )
        row.update({code: str(self.findings[code]) for code in FINDING_CODES})
        if self.nodule is not None:
            row.update(
                nodule_diameter_mm=f"{self.nodule.diameter_mm:.2f}",
                nodule_x=f"{self.nodule.centre_px[0]:.1f}",
                nodule_y=f"{self.nodule.centre_px[1]:.1f}",
                nodule_contrast=f"{self.nodule.contrast:.4f}",
            )
        if self.consolidation is not None:
            x0, y0, x1, y1 = self.consolidation.bbox_px
            row.update(
                consolidation_x0=str(x0),
                consolidation_y0=str(y0),
                consolidation_x1=str(x1),
                consolidation_y1=str(y1),
                consolidation_extent=self.consolidation.extent,
            )
        return row


def _uid(seed: int, *parts: object) -> str:
    return str(generate_uid(entropy_srcs=["diagnostics-synth", str(seed), *map(str, parts)]))


def assign_patients(seed: int, studies: int, repeat_fraction: float) -> list[int]:
    """Patient number of each study; a repeat study reuses a recent earlier patient."""
    rng = np.random.default_rng([seed, 0xFA71E])
    patients: list[int] = []
    for index in range(studies):
        if index and rng.random() < repeat_fraction:
            patients.append(patients[int(rng.integers(max(0, index - 20), index))])
        else:
            patients.append(index)
    return patients


def _patient(seed: int, number: int) -> tuple[Patient, Habitus]:
    rng = np.random.default_rng([seed, number, 1])
    sex = "F" if rng.random() < 0.5 else "M"
    birth = date(1935, 1, 1) + timedelta(days=int(rng.integers(0, 365 * 70)))
    patient = Patient(
        patient_id=f"SYN{seed % 100000:05d}-{number:06d}",
        name=f"SYNTHETIC^PATIENT^{number:06d}",
        birth_date=birth,
        sex=sex,
    )
    return patient, sample_habitus(rng)


def _choose_syntax(rng: np.random.Generator, config: SynthConfig) -> UID:
    if rng.random() < config.compressed_fraction:
        return COMPRESSED_SYNTAXES[int(rng.integers(len(COMPRESSED_SYNTAXES)))]
    return ExplicitVRLittleEndian


def make_study(
    seed: int, index: int, patient_number: int, config: SynthConfig
) -> tuple[StudyTruth, np.ndarray, Patient, Acquisition]:
    """Render one study: its truth, its 12-bit pixels, and the DICOM identity to write it with."""
    rng = np.random.default_rng([seed, index, 2])
    patient, habitus = _patient(seed, patient_number)
    view = "AP" if rng.random() < config.ap_fraction else "PA"
    enlarged = rng.random() < config.cardiomegaly_prevalence
    ctr = float(rng.uniform(*(ENLARGED_CTR if enlarged else NORMAL_CTR)))
    geometry = Geometry(config.rows, config.columns, config.spacing_mm)
    phantom = render_chest(geometry, habitus, view, ctr, rng)
    nodule = None
    if rng.random() < config.nodule_prevalence:
        nodule = add_nodule(phantom, sample_nodule_diameter_mm(rng), rng)
    consolidation = None
    if rng.random() < config.consolidation_prevalence:
        consolidation = add_consolidation(phantom, rng)
    pixels = expose(phantom.attenuation, rng)
    photometric = "MONOCHROME1" if rng.random() < config.monochrome1_fraction else "MONOCHROME2"
    syntax = _choose_syntax(rng, config)
    acquired = datetime(2024, 1, 1, 7) + timedelta(minutes=int(rng.integers(0, 60 * 24 * 365)))
    acquisition = Acquisition(
        study_instance_uid=_uid(seed, index, "study"),
        series_instance_uid=_uid(seed, index, "series"),
        sop_instance_uid=_uid(seed, index, "instance"),
        accession_number=f"SYN{index:08d}",
        study_id=str(index + 1),
        acquired_at=acquired,
        view=view,
        spacing_mm=config.spacing_mm,
        photometric=photometric,
        transfer_syntax=syntax,
    )
    truth = StudyTruth(
        study_instance_uid=acquisition.study_instance_uid,
        patient_id=patient.patient_id,
        view=view,
        file=f"study-{index + 1:05d}/IM-0001.dcm",
        ctr=phantom.ctr,
        photometric_interpretation=photometric,
        transfer_syntax=str(syntax),
        nodule=nodule,
        consolidation=consolidation,
        findings={
            "nodule": int(nodule is not None),
            "consolidation": int(consolidation is not None),
            "cardiomegaly": int(phantom.ctr > 0.5),
        },
    )
    return truth, pixels, patient, acquisition


def _write_one(args: tuple[Path, int, int, int, SynthConfig]) -> StudyTruth:
    out, seed, index, patient_number, config = args
    truth, pixels, patient, acquisition = make_study(seed, index, patient_number, config)
    path = out / truth.file
    path.parent.mkdir(parents=True, exist_ok=True)
    build_dx(pixels, patient, acquisition).save_as(path, enforce_file_format=True)
    return truth


def generate(
    out: Path, studies: int, seed: int, config: SynthConfig | None = None, workers: int = 1
) -> list[StudyTruth]:
    """Write `studies` studies under `out` and `out/labels.csv`; return their truth in order."""
    if studies < 1:
        raise ValueError("studies must be at least 1")
    config = config or SynthConfig()
    out.mkdir(parents=True, exist_ok=True)
    patients = assign_patients(seed, studies, config.repeat_patient_fraction)
    jobs = [(out, seed, index, patients[index], config) for index in range(studies)]
    truths: list[StudyTruth] = []
    if workers > 1:
        # spawn, not fork: a caller with threads (a service, a test runner, ONNX Runtime) can
        # hold a lock at the moment of a fork, and the forked workers then wait forever.
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
            truths.extend(pool.map(_write_one, jobs, chunksize=4))
    else:
        truths.extend(map(_write_one, jobs))
    write_labels(out / LABELS_FILE, (truth.label_row() for truth in truths), LABEL_COLUMNS)
    return truths
