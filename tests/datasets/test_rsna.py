"""RSNA Pneumonia: DICOM per patient, one labels row per box, class file cross-checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics.datasets import load_dataset
from diagnostics.errors import ConfigurationError, DatasetError
from tests.datasets.fixtures import chest, write_dicom, write_rows

LABELS = "patientId,x,y,width,height,Target"
CLASSES = "patientId,class"
PATIENTS = [f"{n:08x}-aaaa-bbbb-cccc-{n:012x}" for n in range(12)]


def write_rsna(root: Path, rows: list[list[object]], classes: list[list[object]] | None) -> Path:
    write_rows(root / "stage_2_train_labels.csv", LABELS, rows)
    if classes is not None:
        write_rows(root / "stage_2_detailed_class_info.csv", CLASSES, classes)
    for n, pid in enumerate(dict.fromkeys(str(r[0]) for r in rows)):
        write_dicom(root / "stage_2_train_images" / f"{pid}.dcm", pid, chest(n))
    return root


def standard_rows() -> tuple[list[list[object]], list[list[object]]]:
    rows: list[list[object]] = []
    classes: list[list[object]] = []
    for n, pid in enumerate(PATIENTS):
        if n % 3 == 0:  # opacities: two boxes each
            rows.append([pid, 8.0, 16.0, 16.0, 16.0, 1])
            rows.append([pid, 40.0, 16.0, 16.0, 32.0, 1])
            classes += [[pid, "Lung Opacity"], [pid, "Lung Opacity"]]
        else:
            rows.append([pid, "", "", "", "", 0])
            classes.append([pid, "Normal" if n % 2 else "No Lung Opacity / Not Normal"])
    return rows, classes


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_rsna(tmp_path_factory.mktemp("rsna"), *standard_rows())


def test_one_example_per_patient_with_merged_boxes(root: Path) -> None:
    examples = load_dataset("rsna", root, ["pneumonia"])
    assert [e.patient_id for e in examples] == PATIENTS
    assert all(e.study_instance_uid == e.patient_id for e in examples)
    by_patient = {e.patient_id: e for e in examples}
    positive = by_patient[PATIENTS[0]]
    assert positive.labels == (1,)
    assert positive.boxes[0] == pytest.approx((8 / 64, 16 / 64, 56 / 64, 48 / 64))
    assert positive.details["boxes"] == "2"
    negative = by_patient[PATIENTS[1]]
    assert negative.labels == (0,) and negative.boxes == (None,)
    assert negative.path.name == f"{PATIENTS[1]}.dcm"


def test_opacity_can_be_read_as_consolidation_but_only_one_finding(root: Path) -> None:
    examples = load_dataset("rsna", root, ["consolidation"], opacity_finding="consolidation")
    assert sum(e.labels[0] for e in examples) == 4
    with pytest.raises(ConfigurationError, match="labels one finding, 'pneumonia'"):
        load_dataset("rsna", root, ["consolidation"])
    with pytest.raises(ConfigurationError, match="does not label nodule"):
        load_dataset("rsna", root, ["pneumonia", "nodule"])


def test_train_and_test_splits_keep_patients_apart(root: Path) -> None:
    train = {e.patient_id for e in load_dataset("rsna", root, ["pneumonia"], split="train")}
    test = {
        e.patient_id
        for e in load_dataset("rsna", root, ["pneumonia"], split="test", test_fraction=0.5)
    }
    also_train = {
        e.patient_id
        for e in load_dataset("rsna", root, ["pneumonia"], split="train", test_fraction=0.5)
    }
    assert test and also_train and not test & also_train
    assert test | also_train == set(PATIENTS)
    assert len(train) >= len(also_train)  # a smaller test fraction leaves more for training


def test_class_file_contradicting_target_is_refused(tmp_path: Path) -> None:
    rows, classes = standard_rows()
    classes[0] = [PATIENTS[0], "Normal"]
    write_rsna(tmp_path, rows, classes)
    with pytest.raises(DatasetError, match=r"detailed_class_info.csv, line 2, column 'class'"):
        load_dataset("rsna", tmp_path, ["pneumonia"])


def test_class_file_is_optional(tmp_path: Path) -> None:
    write_rsna(tmp_path, standard_rows()[0], None)
    assert len(load_dataset("rsna", tmp_path, ["pneumonia"])) == len(PATIENTS)


@pytest.mark.parametrize(
    ("row", "where", "message"),
    [
        ([PATIENTS[0], 8, 16, 16, 16, 2], "column 'Target'", "must be 0 or 1"),
        ([PATIENTS[0], 8, 16, 16, 16, 0], "column 'x'", "must not have a box"),
        ([PATIENTS[0], 8, 16, "", 16, 1], "column 'width'", "needs a box"),
        ([PATIENTS[0], 8, 16, "wide", 16, 1], "column 'width'", "not a number"),
        ([PATIENTS[0], 8, 16, -4, 16, 1], "column 'width'", "must be positive"),
        ([PATIENTS[0], 60, 16, 16, 16, 1], "column 'x'", "outside the image's 64 columns"),
    ],
)
def test_malformed_rows_name_file_line_and_column(
    tmp_path: Path, row: list[object], where: str, message: str
) -> None:
    write_rsna(tmp_path, [[PATIENTS[1], "", "", "", "", 0], row], None)
    with pytest.raises(DatasetError, match=rf"train_labels.csv, line 3, {where}: .*{message}"):
        load_dataset("rsna", tmp_path, ["pneumonia"])


def test_a_patient_with_target_0_and_1_is_refused(tmp_path: Path) -> None:
    rows = [[PATIENTS[0], 8, 16, 16, 16, 1], [PATIENTS[0], "", "", "", "", 0]]
    write_rsna(tmp_path, rows, None)
    with pytest.raises(DatasetError, match="has Target 0 here but 1 on line 2"):
        load_dataset("rsna", tmp_path, ["pneumonia"])


def test_absent_dicom_is_reported(tmp_path: Path) -> None:
    write_rsna(tmp_path, standard_rows()[0], None)
    (tmp_path / "stage_2_train_images" / f"{PATIENTS[4]}.dcm").unlink()
    with pytest.raises(DatasetError, match=rf"{PATIENTS[4]}.dcm does not exist"):
        load_dataset("rsna", tmp_path, ["pneumonia"])
    assert len(load_dataset("rsna", tmp_path, ["pneumonia"], missing="skip")) == 11
