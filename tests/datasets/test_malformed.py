"""Malformed files in every layout fail with a DatasetError that names file, line and column.

A loader that silently skipped a broken row would train on a different dataset from the one
the researcher believes they have; these cases are the ones real releases and hand edits hit.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics.datasets import load_dataset
from diagnostics.errors import DatasetError
from tests.datasets.fixtures import NIH_BOX_HEADER, write_nih, write_rows

CODES = ["nodule", "cardiomegaly"]
GOOD = [("00000001_000.png", "Nodule", 1, "PA"), ("00000002_000.png", "No Finding", 2, "PA")]


def nih_with(tmp_path: Path, entries: list[tuple[str, str, int | str, str]]) -> Path:
    return write_nih(tmp_path, entries)


@pytest.mark.parametrize(
    ("entry", "column", "message"),
    [
        (("00000003_000.png", "Nodule|Tumour", 3, "PA"), "Finding Labels", "'Tumour' is not a"),
        (("00000003_000.png", "", 3, "PA"), "Finding Labels", "an empty value"),
        (("00000003_000.png", "No Finding|Nodule", 3, "PA"), "Finding Labels", "together"),
        (("00000003_000.png", "Nodule", "", "PA"), "Patient ID", "empty patient"),
        (("00000001_000.png", "Nodule", 3, "PA"), "Image Index", "listed more than once"),
    ],
)
def test_nih_entry_values(
    tmp_path: Path, entry: tuple[str, str, int | str, str], column: str, message: str
) -> None:
    root = nih_with(tmp_path, [*GOOD, entry])
    with pytest.raises(DatasetError) as caught:
        load_dataset("nih", root, CODES)
    text = str(caught.value)
    assert f"Data_Entry_2017.csv, line 4, column '{column}'" in text and message in text


def test_missing_columns_are_listed(tmp_path: Path) -> None:
    write_rows(tmp_path / "Data_Entry_2017.csv", "Image Index,Labels,Patient", [])
    with pytest.raises(DatasetError, match=r"missing column\(s\) 'Finding Labels', 'Patient ID'"):
        load_dataset("nih", tmp_path, CODES)


def test_missing_label_file_says_which_layout_needs_it(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"Data_Entry_2017\.csv: no such file; the nih layout"):
        load_dataset("nih", tmp_path, CODES)


def test_missing_official_list(tmp_path: Path) -> None:
    root = nih_with(tmp_path, GOOD)
    (root / "test_list.txt").unlink()
    with pytest.raises(DatasetError, match=r"test_list\.txt: no such file"):
        load_dataset("nih", root, CODES, split="test")


def test_all_absent_images_are_counted(tmp_path: Path) -> None:
    root = write_nih(tmp_path, GOOD, images=False)
    with pytest.raises(DatasetError, match=r"line 2, column 'Image Index'.*2 listed image"):
        load_dataset("nih", root, CODES)


@pytest.mark.parametrize(
    ("box", "column", "message"),
    [
        (["00000001_000.png", "Nodule", "x", 1, 4, 4], "Bbox x", "'x' is not a number"),
        (["00000001_000.png", "Nodule", 1, 1, 0, 4], "Bbox w", "width 0 must be positive"),
        (["00000001_000.png", "Nodule", 1, 1, 4, "nan"], "Bbox h", "not a finite number"),
        (["00000001_000.png", "Nodule", 60, 1, 10, 4], "Bbox x", "outside the image's 64"),
        (["00000001_000.png", "Nodule", 1, -9, 4, 4], "Bbox y", "outside the image's 64 rows"),
        (["00000001_000.png", "Tumour", 1, 1, 4, 4], "Finding Label", "'Tumour' is not a"),
    ],
)
def test_malformed_boxes(tmp_path: Path, box: list[object], column: str, message: str) -> None:
    root = nih_with(tmp_path, GOOD)
    ok = ["00000001_000.png", "Nodule", 1.0, 1.0, 4.0, 4.0, "", "", ""]
    write_rows(root / "BBox_List_2017.csv", NIH_BOX_HEADER, [ok, [*box, "", "", ""]])
    with pytest.raises(DatasetError) as caught:
        load_dataset("nih", root, CODES)
    text = str(caught.value)
    assert f"BBox_List_2017.csv, line 3, column '{column}'" in text and message in text


def test_box_file_with_another_header_is_refused(tmp_path: Path) -> None:
    root = nih_with(tmp_path, GOOD)
    write_rows(root / "BBox_List_2017.csv", "image,label,x,y,w,h", [])
    with pytest.raises(DatasetError, match="expected the header 'Image Index,Finding Label"):
        load_dataset("nih", root, CODES)


def test_undecodable_csv_is_a_dataset_error(tmp_path: Path) -> None:
    (tmp_path / "Data_Entry_2017.csv").write_bytes(b"Image Index,Finding Labels\n\xff\xfe\x00\n")
    with pytest.raises(DatasetError, match="not UTF-8 text"):
        load_dataset("nih", tmp_path, CODES)


def test_a_short_row_is_refused_not_read_as_negative(tmp_path: Path) -> None:
    from diagnostics.datasets.common import read_csv

    path = tmp_path / "train.csv"
    path.write_text("Path,Sex,Cardiomegaly,Consolidation\nimg.png,F,1.0\n")
    with pytest.raises(DatasetError, match="line 2: 3 cells where the header has 4"):
        read_csv(path, ["Path"], "chexpert")
