"""NIH ChestX-ray14: pipe-separated labels, official lists, frontal views, boxes in pixels."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics.datasets import LAYOUTS, load_dataset
from diagnostics.datasets.nih import MAPPING
from diagnostics.errors import DatasetError
from tests.datasets.fixtures import write_nih

CODES = ["nodule", "cardiomegaly", "effusion"]
ENTRIES = [
    ("00000001_000.png", "Cardiomegaly|Effusion", 1, "PA"),
    ("00000001_001.png", "No Finding", 1, "AP"),
    ("00000002_000.png", "Nodule", 2, "PA"),
    ("00000003_000.png", "Mass|Infiltration", 3, "PA"),
    ("00000004_000.png", "Nodule|Cardiomegaly", 4, "LL"),  # a lateral view: left out
    ("00000005_000.png", "No Finding", 5, "PA"),
]
TEST = ["00000005_000.png", "00000002_000.png"]
BOXES = [
    ["00000002_000.png", "Nodule", 16.0, 8.0, 16.0, 8.0],
    ["00000002_000.png", "Nodule", 32.0, 32.0, 16.0, 16.0],  # a second nodule
    ["00000001_000.png", "Infiltrate", 1.0, 1.0, 5.0, 5.0],  # the box file's own spelling
    ["00000001_000.png", "Cardiomegaly", 16.0, 24.0, 32.0, 24.0],
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_nih(tmp_path_factory.mktemp("nih"), ENTRIES, boxes=BOXES, test=TEST)


def test_labels_map_to_coded_findings(root: Path) -> None:
    examples = {e.study_instance_uid: e for e in load_dataset("nih", root, CODES)}
    assert set(examples) == {e[0] for e in ENTRIES} - {"00000004_000.png"}  # frontal only
    assert examples["00000001_000.png"].labels == (0, 1, 1)
    assert examples["00000001_001.png"].labels == (0, 0, 0)
    assert examples["00000002_000.png"].labels == (1, 0, 0)
    assert examples["00000003_000.png"].labels == (0, 0, 0)  # Mass is not a nodule here
    assert examples["00000001_001.png"].patient_id == "1"
    first = examples["00000001_000.png"]
    assert first.path.is_file() and first.path.parent.name == "images"
    assert first.details["View Position"] == "PA"


def test_official_lists_split_the_data(root: Path) -> None:
    test = {e.study_instance_uid for e in load_dataset("nih", root, CODES, split="test")}
    train = {e.study_instance_uid for e in load_dataset("nih", root, CODES, split="train")}
    assert test == set(TEST)
    assert train == {"00000001_000.png", "00000001_001.png", "00000003_000.png"}


def test_boxes_become_fractions_and_merge_per_finding(root: Path) -> None:
    examples = {e.study_instance_uid: e for e in load_dataset("nih", root, CODES)}
    nodule, cardio, effusion = examples["00000002_000.png"].boxes
    assert nodule == pytest.approx((0.25, 0.125, 0.75, 0.75))  # both nodules, enclosed
    assert cardio is None and effusion is None
    assert examples["00000001_000.png"].boxes[1] == pytest.approx((0.25, 0.375, 0.75, 0.75))
    no_boxes = load_dataset("nih", root, CODES, boxes=False)
    assert all(box is None for e in no_boxes for box in e.boxes)


def test_a_box_on_an_image_without_that_label_is_ignored(tmp_path: Path) -> None:
    root = write_nih(
        tmp_path,
        ENTRIES[:2],
        boxes=[["00000001_001.png", "Nodule", 1.0, 1.0, 4.0, 4.0]],  # 'No Finding' image
    )
    examples = load_dataset("nih", root, CODES)
    assert all(box is None for e in examples for box in e.boxes)


def test_mapping_table_is_what_the_registry_documents() -> None:
    layout = LAYOUTS["nih"]
    assert layout.mapping == MAPPING
    assert MAPPING["Nodule"] == "nodule" and "Mass" not in MAPPING
    assert set(layout.codes) == set(MAPPING.values())
    assert {"split", "boxes", "missing"} <= set(layout.options)


def test_missing_images_fail_or_are_skipped_on_request(tmp_path: Path) -> None:
    root = write_nih(tmp_path, ENTRIES[:3])
    (next(root.rglob("00000002_000.png"))).unlink()
    with pytest.raises(DatasetError, match=r"line 4, column 'Image Index'.*00000002_000.png"):
        load_dataset("nih", root, CODES)
    kept = load_dataset("nih", root, CODES, missing="skip")
    assert [e.study_instance_uid for e in kept] == ["00000001_000.png", "00000001_001.png"]


def test_v2020_entry_file_name_is_accepted(tmp_path: Path) -> None:
    root = write_nih(tmp_path, ENTRIES[:2])
    (root / "Data_Entry_2017.csv").rename(root / "Data_Entry_2017_v2020.csv")
    assert len(load_dataset("nih", root, CODES)) == 2
