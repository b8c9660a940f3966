"""COVID collections: ieee8023 metadata.csv (hierarchical findings) and COVIDx split lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from diagnostics.datasets import load_dataset
from diagnostics.datasets.records import UNKNOWN_LABEL
from diagnostics.errors import ConfigurationError, DatasetError
from tests.datasets.fixtures import COVID_HEADER, chest, write_image, write_rows

CODES = ["pneumonia", "covid19"]
COLUMNS = COVID_HEADER.split(",")


def meta(
    patient: str, finding: str, view: str, filename: str, modality: str = "X-ray"
) -> list[str]:
    row = dict.fromkeys(COLUMNS, "")
    row.update(
        patientid=patient,
        finding=finding,
        view=view,
        modality=modality,
        folder="images",
        filename=filename,
    )
    return [row[c] for c in COLUMNS]


ROWS = [
    meta("1", "Pneumonia/Viral/COVID-19", "PA", "a.jpg"),
    meta("1", "Pneumonia/Viral/COVID-19", "AP Supine", "b.png"),
    meta("2", "Pneumonia/Bacterial/Streptococcus", "AP", "c.jpeg"),
    meta("3", "No Finding", "PA", "d.png"),
    meta("4", "COVID-19", "PA", "e.png"),  # an early version's single term
    meta("5", "Tuberculosis", "PA", "f.png"),
    meta("6", "todo", "PA", "g.png"),  # not labelled yet: left out
    meta("7", "Pneumonia", "L", "h.png"),  # lateral: left out
    meta("8", "Pneumonia/Viral/COVID-19", "Axial", "i.png", modality="CT"),  # CT: left out
]


def write_covid(root: Path, rows: list[list[str]]) -> Path:
    write_rows(root / "metadata.csv", COVID_HEADER, rows)
    for n, row in enumerate(rows):
        pixels = np.stack([chest(n)] * 3, axis=-1)  # colour files of grey images, as published
        write_image(root / "images" / row[COLUMNS.index("filename")], pixels)
    return root


@pytest.fixture(scope="module")
def covid(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_covid(tmp_path_factory.mktemp("covid"), ROWS)


def test_hierarchy_terms_map_to_codes_and_filters_apply(covid: Path) -> None:
    examples = {e.study_instance_uid: e for e in load_dataset("covid", covid, CODES)}
    assert {k: v.labels for k, v in examples.items()} == {
        "a.jpg": (1, 1),
        "b.png": (1, 1),
        "c.jpeg": (1, 0),
        "d.png": (0, 0),
        "e.png": (0, 1),
        "f.png": (0, 0),
    }
    assert examples["b.png"].patient_id == "1"
    assert examples["a.jpg"].path == covid / "images" / "a.jpg"


def test_pipe_separated_findings_are_all_read(tmp_path: Path) -> None:
    root = write_covid(tmp_path, [meta("1", "Pneumonia/Viral/COVID-19|ARDS", "PA", "a.png")])
    assert load_dataset("covid", root, CODES)[0].labels == (1, 1)


def test_hash_split_keeps_patients_apart(covid: Path) -> None:
    test = load_dataset("covid", covid, CODES, split="test", test_fraction=0.5)
    train = load_dataset("covid", covid, CODES, split="train", test_fraction=0.5)
    assert not {e.patient_id for e in test} & {e.patient_id for e in train}
    assert len(test) + len(train) == 6


@pytest.mark.parametrize(
    ("finding", "message"),
    [
        ("", "empty finding"),
        ("No Finding|Pneumonia", "'No Finding' together with findings"),
        ("Pneumonia//COVID-19", "has an empty level"),
    ],
)
def test_bad_findings_name_line_and_column(tmp_path: Path, finding: str, message: str) -> None:
    root = write_covid(tmp_path, [ROWS[0], meta("9", finding, "PA", "z.png")])
    with pytest.raises(DatasetError, match=rf"metadata.csv, line 3, column 'finding': .*{message}"):
        load_dataset("covid", root, CODES)


def test_covid_layout_refuses_findings_it_does_not_label(covid: Path) -> None:
    with pytest.raises(ConfigurationError, match="covid layout does not label nodule"):
        load_dataset("covid", covid, ["nodule"])


# ---- COVIDx ---------------------------------------------------------------------------------


def write_covidx(root: Path, lists: dict[str, list[str]]) -> Path:
    for part, lines in lists.items():
        root.mkdir(parents=True, exist_ok=True)
        (root / f"{part}.txt").write_text("".join(line + "\n" for line in lines))
        for n, line in enumerate(lines):
            name = line.split()[-3] if len(line.split()) >= 4 else line.split()[-2]
            write_image(root / part / name, chest(n))
    return root


def test_covidx_three_class_lists(tmp_path: Path) -> None:
    root = write_covidx(
        tmp_path,
        {
            "train": ["p1 a.png COVID-19 cohen", "p2 b.png pneumonia rsna", "p3 c.png normal rsna"],
            "test": ["p4 d.png COVID-19 actmed"],
        },
    )
    train = load_dataset("covidx", root, CODES, split="train")
    assert [(e.patient_id, e.labels) for e in train] == [
        ("p1", (1, 1)),
        ("p2", (1, 0)),
        ("p3", (0, 0)),
    ]
    assert [e.study_instance_uid for e in load_dataset("covidx", root, CODES, split="test")] == [
        "d.png"
    ]
    assert len(load_dataset("covidx", root, CODES)) == 4


def test_covidx_binary_lists_leave_pneumonia_unknown(tmp_path: Path) -> None:
    root = write_covidx(
        tmp_path, {"train": ["101 x.png positive sirm", "102 y.png negative rsna"], "test": []}
    )
    examples = load_dataset("covidx", root, ["covid19"], split="train")
    assert [e.labels for e in examples] == [(1,), (0,)]
    with pytest.raises(DatasetError, match="no covidx example has a known label for pneumonia"):
        load_dataset("covidx", root, CODES, split="train")
    mixed = write_covidx(
        tmp_path / "mixed", {"train": ["1 a.png positive s", "2 b.png pneumonia s"], "test": []}
    )
    labels = [e.labels for e in load_dataset("covidx", mixed, CODES, split="train")]
    assert labels == [(UNKNOWN_LABEL, 1), (1, 0)]


def test_covidx_bad_label_and_missing_image(tmp_path: Path) -> None:
    root = write_covidx(tmp_path, {"train": ["p1 a.png COVID-19 cohen"], "test": []})
    (root / "train.txt").write_text("p1 a.png COVID-19 cohen\np2 b.png maybe rsna\n")
    with pytest.raises(DatasetError, match=r"train.txt, line 2, column 'label'.*'maybe'"):
        load_dataset("covidx", root, CODES, split="train")
    (root / "train.txt").write_text("p1 a.png COVID-19 cohen\np2 gone.png normal rsna\n")
    with pytest.raises(DatasetError, match=r"train.txt, line 2, column 'filename'.*gone.png"):
        load_dataset("covidx", root, CODES, split="train")


def test_covidx_refuses_a_patient_in_both_splits_or_drops_it_from_training(
    tmp_path: Path,
) -> None:
    root = write_covidx(
        tmp_path,
        {
            "train": ["p1 a.png COVID-19 cohen", "p2 b.png normal rsna", "p2 c.png normal rsna"],
            # p1 here is another source's patient: sources number their patients independently
            "test": ["p2 d.png pneumonia rsna", "p4 e.png normal rsna", "p1 f.png normal sirm"],
        },
    )
    for split in ("train", "test", "all"):
        with pytest.raises(
            DatasetError, match=r"1 patient\(s\) are in both train.txt and test.txt \(p2 \(rsna\)\)"
        ):
            load_dataset("covidx", root, CODES, split=split)
    train = load_dataset("covidx", root, CODES, split="train", overlap="drop")
    assert [e.patient_id for e in train] == ["p1"]
    test = load_dataset("covidx", root, CODES, split="test", overlap="drop")
    assert [e.study_instance_uid for e in test] == ["d.png", "e.png", "f.png"]  # kept whole
    with pytest.raises(ConfigurationError, match="option overlap must be one of"):
        load_dataset("covidx", root, CODES, overlap="ignore")
