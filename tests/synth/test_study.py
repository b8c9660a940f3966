"""Synthetic studies: reproducible, truthful labels, valid DICOM that our own reader accepts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from diagnostics.datasets.labelled import FINDING_CODES, LABEL_COLUMNS, iter_label_rows
from diagnostics.dicom import read_instance
from diagnostics.synth import SynthConfig, generate
from diagnostics.synth.dx import COMPRESSED_SYNTAXES
from diagnostics.synth.findings import sample_nodule_diameter_mm
from diagnostics.synth.study import assign_patients, make_study

SMALL = SynthConfig(rows=192, columns=160, spacing_mm=2.4, compressed_fraction=0.5)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate(out, 16, seed=11, config=SMALL)
    return out


def test_labels_have_the_contract_columns_in_order(corpus: Path) -> None:
    header = (corpus / "labels.csv").read_text().splitlines()[0].split(",")
    assert header[0] == "study_instance_uid"
    assert header[1:4] == list(FINDING_CODES)
    assert tuple(header) == LABEL_COLUMNS


def test_every_label_row_matches_its_dicom_file(corpus: Path) -> None:
    rows = list(iter_label_rows(corpus / "labels.csv"))
    assert len(rows) == 16
    for row in rows:
        image = read_instance(corpus / row["file"])
        assert image.uids.study_instance_uid == row["study_instance_uid"]
        assert image.uids.patient_id == row["patient_id"]
        assert image.info.view_position == row["view"]
        assert image.info.photometric_interpretation == row["photometric_interpretation"]
        assert image.info.transfer_syntax_uid == row["transfer_syntax"]
        assert image.info.body_part == "CHEST" and image.info.modality == "DX"
        assert image.info.bits_stored == 12
        assert image.info.spacing_source == "ImagerPixelSpacing"
        assert image.pixels.shape == (1, SMALL.rows, SMALL.columns)
        assert int(row["cardiomegaly"]) == int(float(row["ctr"]) > 0.5)
        assert bool(row["nodule_diameter_mm"]) == (row["nodule"] == "1")
        assert bool(row["consolidation_x0"]) == (row["consolidation"] == "1")


def test_corpus_mixes_views_photometrics_and_syntaxes(corpus: Path) -> None:
    rows = list(iter_label_rows(corpus / "labels.csv"))
    assert {r["photometric_interpretation"] for r in rows} == {"MONOCHROME1", "MONOCHROME2"}
    assert {r["view"] for r in rows} == {"PA", "AP"}
    assert {r["transfer_syntax"] for r in rows} & {str(uid) for uid in COMPRESSED_SYNTAXES}


def test_monochrome1_studies_read_with_dense_bright(corpus: Path) -> None:
    """After inversion a MONOCHROME1 study must look like MONOCHROME2: mediastinum above lung."""
    for row in iter_label_rows(corpus / "labels.csv"):
        pixels = read_instance(corpus / row["file"]).pixels[0]
        rows, cols = pixels.shape
        mediastinum = pixels[rows // 3 : rows // 2, cols // 2 - 4 : cols // 2 + 4].mean()
        lung = pixels[rows // 3 : rows // 2, cols // 4 - 4 : cols // 4 + 4].mean()
        assert mediastinum > lung, row["photometric_interpretation"]


def test_same_seed_same_files_and_prefix_stable(tmp_path: Path) -> None:
    first = generate(tmp_path / "a", 3, seed=5, config=SMALL)
    again = generate(tmp_path / "b", 5, seed=5, config=SMALL)
    assert [t.label_row() for t in first] == [t.label_row() for t in again[:3]]
    for truth in first:
        a = (tmp_path / "a" / truth.file).read_bytes()
        b = (tmp_path / "b" / truth.file).read_bytes()
        assert a == b


def test_different_seeds_differ(tmp_path: Path) -> None:
    a = make_study(1, 0, 0, SMALL)[1]
    b = make_study(2, 0, 0, SMALL)[1]
    assert not np.array_equal(a, b)


@pytest.mark.slow
def test_parallel_generation_equals_serial(tmp_path: Path) -> None:
    serial = generate(tmp_path / "s", 4, seed=9, config=SMALL, workers=1)
    parallel = generate(tmp_path / "p", 4, seed=9, config=SMALL, workers=2)
    assert [t.label_row() for t in serial] == [t.label_row() for t in parallel]


def test_at_least_30_percent_of_nodules_are_early_stage() -> None:
    rng = np.random.default_rng(0)
    sizes = np.array([sample_nodule_diameter_mm(rng) for _ in range(4000)])
    assert sizes.min() >= 3.0 and sizes.max() <= 30.0
    assert (sizes <= 10.0).mean() >= 0.30


@pytest.mark.slow
def test_prevalence_and_multiple_findings_occur() -> None:
    config = SynthConfig(rows=96, columns=96, spacing_mm=4.5)
    patients = assign_patients(3, 120, config.repeat_patient_fraction)
    truths = [make_study(3, i, patients[i], config)[0] for i in range(120)]
    counts = {code: sum(t.findings[code] for t in truths) for code in FINDING_CODES}
    for code, prevalence in (
        ("nodule", config.nodule_prevalence),
        ("consolidation", config.consolidation_prevalence),
        ("cardiomegaly", config.cardiomegaly_prevalence),
    ):
        assert abs(counts[code] / 120 - prevalence) < 0.12, (code, counts)
    per_study = [sum(t.findings.values()) for t in truths]
    assert 0 in per_study and max(per_study) >= 2


def test_some_patients_have_several_studies() -> None:
    patients = assign_patients(4, 200, 0.15)
    assert 10 < 200 - len(set(patients)) < 60


def test_config_rejects_nonsense() -> None:
    with pytest.raises(ValueError, match="nodule_prevalence"):
        SynthConfig(nodule_prevalence=1.5)
    with pytest.raises(ValueError, match="rows"):
        SynthConfig(rows=8)


@pytest.mark.slow
def test_generated_files_pass_dciodvfy_with_zero_errors(corpus: Path) -> None:
    rows = list(iter_label_rows(corpus / "labels.csv"))
    for row in rows:
        result = subprocess.run(
            ["dciodvfy", str(corpus / row["file"])], capture_output=True, text=True, check=False
        )
        report = result.stdout + result.stderr
        errors = [line for line in report.splitlines() if line.startswith("Error")]
        assert errors == [], f"{row['file']} ({row['transfer_syntax']}): {errors}"
