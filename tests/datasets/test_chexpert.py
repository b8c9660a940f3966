"""CheXpert: 1/0/-1/blank labels under each uncertainty policy, frontal views, one per study."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics.datasets import load_dataset
from diagnostics.datasets.records import UNKNOWN_LABEL
from diagnostics.errors import ConfigurationError, DatasetError
from tests.datasets.fixtures import CHEXPERT_HEADER, chest, chexpert_row, write_image, write_rows

CODES = ["cardiomegaly", "effusion", "pneumonia"]
PREFIX = "CheXpert-v1.0-small"


def write_chexpert(root: Path, train: list[list[str]], valid: list[list[str]]) -> Path:
    write_rows(root / "train.csv", CHEXPERT_HEADER, train)
    write_rows(root / "valid.csv", CHEXPERT_HEADER, valid)
    for n, row in enumerate(train + valid):
        relative = Path(*Path(row[0]).parts[1:])  # below the dataset folder
        write_image(root / relative.with_suffix(".jpg"), chest(n, row[7] == "1.0"))
    return root


def rows() -> tuple[list[list[str]], list[list[str]]]:
    train = [
        chexpert_row(
            f"{PREFIX}/train/patient00001/study1/view1_frontal.jpg",
            Cardiomegaly="1.0",
            Pleural_Effusion="-1.0",
            Pneumonia="0.0",
        ),
        chexpert_row(
            f"{PREFIX}/train/patient00001/study1/view2_lateral.jpg",
            view="Lateral",
            Cardiomegaly="1.0",
        ),
        chexpert_row(
            f"{PREFIX}/train/patient00001/study2/view1_frontal.jpg",
            Cardiomegaly="-1.0",
            Pleural_Effusion="1.0",
        ),
        chexpert_row(
            f"{PREFIX}/train/patient00001/study2/view2_frontal.jpg", Cardiomegaly="1.0"
        ),  # a second frontal image of study2: left out
        chexpert_row(
            f"{PREFIX}/train/patient00002/study1/view1_frontal.jpg",
            Cardiomegaly="0.0",
            Pneumonia="-1",
        ),
    ]
    valid = [
        chexpert_row(
            f"{PREFIX}/valid/patient64541/study1/view1_frontal.jpg",
            Cardiomegaly="1.0",
            Pleural_Effusion="0.0",
            Pneumonia="0.0",
        ),
    ]
    return train, valid


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_chexpert(tmp_path_factory.mktemp("x") / PREFIX, *rows())


def by_study(root: Path, **options: object) -> dict[str, tuple[int, ...]]:
    return {
        e.study_instance_uid: e.labels for e in load_dataset("chexpert", root, CODES, **options)
    }


def test_uncertain_policies(root: Path) -> None:
    u = UNKNOWN_LABEL
    assert by_study(root, split="train") == {  # ignore is the default
        "patient00001/study1": (1, u, 0),
        "patient00001/study2": (u, 1, 0),  # blank pneumonia: not mentioned = negative
        "patient00002/study1": (0, 0, u),
    }
    assert by_study(root, split="train", uncertain="ones") == {
        "patient00001/study1": (1, 1, 0),
        "patient00001/study2": (1, 1, 0),
        "patient00002/study1": (0, 0, 1),
    }
    zeros = by_study(root, split="train", uncertain="zeros")
    assert zeros["patient00001/study2"] == (0, 1, 0)
    with pytest.raises(ConfigurationError, match="option uncertain must be one of"):
        load_dataset("chexpert", root, CODES, uncertain="maybe")


def test_frontal_only_one_image_per_study_patients_from_paths(root: Path) -> None:
    examples = load_dataset("chexpert", root, CODES, split="train")
    assert [e.path.name for e in examples] == ["view1_frontal.jpg"] * 3
    assert [e.patient_id for e in examples] == ["patient00001", "patient00001", "patient00002"]
    assert all(e.path.is_file() for e in examples)


def test_valid_csv_is_the_test_split_and_all_is_both(root: Path) -> None:
    assert list(by_study(root, split="test")) == ["patient64541/study1"]
    assert len(by_study(root)) == 4


def test_images_are_found_without_the_dataset_folder_prefix(tmp_path: Path) -> None:
    train, valid = rows()
    renamed = write_chexpert(tmp_path / "chexpert", train, valid)  # not named like the prefix
    assert len(load_dataset("chexpert", renamed, CODES)) == 4


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("Cardiomegaly", "2.0", "'2.0' is not 1.0, 0.0, -1.0 or blank"),
        ("Pleural Effusion", "yes", "'yes' is not 1.0"),
        ("Frontal/Lateral", "Oblique", "neither 'Frontal' nor 'Lateral'"),
        ("Path", "CheXpert-v1.0-small/train/view1.jpg", "no patientNNNNN/studyN folders"),
    ],
)
def test_bad_values_name_file_line_and_column(
    tmp_path: Path, column: str, value: str, message: str
) -> None:
    train, valid = rows()
    columns = CHEXPERT_HEADER.split(",")
    root = write_chexpert(tmp_path / PREFIX, train, valid)
    train[2][columns.index(column)] = value
    write_rows(root / "train.csv", CHEXPERT_HEADER, train)
    with pytest.raises(DatasetError, match=rf"train.csv, line 4, column '{column}': .*{message}"):
        load_dataset("chexpert", root, CODES, split="train")


def test_missing_finding_column_is_named(tmp_path: Path) -> None:
    root = tmp_path / PREFIX
    write_rows(root / "train.csv", "Path,Sex,Age,Frontal/Lateral,AP/PA,Cardiomegaly", [])
    with pytest.raises(DatasetError, match=r"missing column.*'Pleural Effusion'.*'Pneumonia'"):
        load_dataset("chexpert", root, CODES, split="train")


def test_finding_with_no_known_label_is_refused(tmp_path: Path) -> None:
    only_uncertain = [
        chexpert_row(f"{PREFIX}/train/patient00009/study1/view1_frontal.jpg", Pneumonia="-1.0")
    ]
    root = write_chexpert(tmp_path / PREFIX, only_uncertain, [])
    with pytest.raises(DatasetError, match="no chexpert example has a known label for pneumonia"):
        load_dataset("chexpert", root, ["pneumonia"], split="train")
