"""The labelled folder (`diagnostics.datasets.labelled`): labels meet the right images, the
contract's values and columns are enforced with the file, line and column, and what the writer
writes is what the reader reads.

Each mismatch between labels.csv and the files must stop training, because a model trained on
mislabelled images still produces confident numbers.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from diagnostics.datasets.labelled import (
    FINDING_CODES,
    LABEL_COLUMNS,
    load_labelled_folder,
    read_labels,
    write_labels,
)
from diagnostics.datasets.records import UNKNOWN_LABEL, Example
from diagnostics.dicom import read_instance
from diagnostics.errors import DatasetError
from diagnostics.synth.study import StudyTruth, SynthConfig, generate

CONFIG = SynthConfig(rows=96, columns=96, spacing_mm=4.0)
STUDIES = 12


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[StudyTruth]]:
    folder = tmp_path_factory.mktemp("labelled")
    return folder, generate(folder, STUDIES, seed=31, config=CONFIG)


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One study from another seed: a DICOM file that the first folder's labels know nothing of."""
    folder = tmp_path_factory.mktemp("stranger")
    (truth,) = generate(folder, 1, seed=32, config=CONFIG)
    return folder / truth.file


@pytest.fixture()
def folder(generated: tuple[Path, list[StudyTruth]], tmp_path: Path) -> Path:
    """A private copy of the generated folder that a test may damage."""
    return Path(shutil.copytree(generated[0], tmp_path / "data"))


@pytest.fixture(scope="module")
def examples(generated: tuple[Path, list[StudyTruth]]) -> list[Example]:
    return load_labelled_folder(generated[0], FINDING_CODES)


def _rewrite_labels(folder: Path, edit: Callable[[list[dict[str, str]]], None]) -> None:
    path = folder / "labels.csv"
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows, columns = list(reader), list(reader.fieldnames or [])
    edit(rows)
    columns = [c for c in columns if c in rows[0]]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


# ---- load_labelled_folder -------------------------------------------------------------------


def test_labels_are_matched_to_their_files(
    generated: tuple[Path, list[StudyTruth]], examples: list[Example]
) -> None:
    folder, truths = generated
    assert len(examples) == STUDIES
    for example, truth in zip(examples, truths, strict=True):
        assert example.study_instance_uid == truth.study_instance_uid
        assert example.path == folder / truth.file
        assert example.patient_id == truth.patient_id
        assert example.labels == tuple(truth.findings[code] for code in FINDING_CODES)
        # the file really is that study, read independently of the scan
        assert read_instance(example.path).uids.study_instance_uid == truth.study_instance_uid
    assert any(sum(e.labels) for e in examples)  # the data is not trivially all-negative


def test_labels_follow_the_requested_codes_and_their_order(
    generated: tuple[Path, list[StudyTruth]],
) -> None:
    folder, truths = generated
    examples = load_labelled_folder(folder, ["cardiomegaly", "nodule"])
    assert [e.labels for e in examples] == [
        (t.findings["cardiomegaly"], t.findings["nodule"]) for t in truths
    ]


def test_missing_labels_file_is_refused(folder: Path) -> None:
    (folder / "labels.csv").unlink()
    with pytest.raises(DatasetError, match="no labels file"):
        load_labelled_folder(folder, FINDING_CODES)


def test_missing_finding_column_is_refused(folder: Path) -> None:
    def edit(rows: list[dict[str, str]]) -> None:
        for row in rows:
            del row["consolidation"]

    _rewrite_labels(folder, edit)
    with pytest.raises(DatasetError, match=r"missing column.*consolidation"):
        load_labelled_folder(folder, FINDING_CODES)


@pytest.mark.parametrize("value", ["2", "", "yes", "1.0"])
def test_a_label_that_is_not_0_or_1_is_refused_with_its_line(folder: Path, value: str) -> None:
    def edit(rows: list[dict[str, str]]) -> None:
        rows[4]["nodule"] = value

    _rewrite_labels(folder, edit)
    with pytest.raises(DatasetError, match=f"line 6: nodule must be 0 or 1, not '{value}'"):
        load_labelled_folder(folder, FINDING_CODES)


def test_a_labelled_study_without_its_file_is_refused(
    folder: Path, generated: tuple[Path, list[StudyTruth]]
) -> None:
    victim = generated[1][3]
    (folder / victim.file).unlink()
    with pytest.raises(DatasetError, match=f"no DICOM file.*{victim.study_instance_uid}"):
        load_labelled_folder(folder, FINDING_CODES)


def test_a_study_without_a_labels_row_is_refused(folder: Path, stranger: Path) -> None:
    shutil.copy(stranger, folder / "extra.dcm")
    uid = read_instance(stranger).uids.study_instance_uid
    with pytest.raises(DatasetError, match=f"no row in labels.csv.*{uid}"):
        load_labelled_folder(folder, FINDING_CODES)


def test_a_study_labelled_twice_is_refused(folder: Path) -> None:
    """Two rows for one study (possibly disagreeing) mean the labels file is not one per study."""

    def edit(rows: list[dict[str, str]]) -> None:
        rows.append(dict(rows[2], nodule="1" if rows[2]["nodule"] == "0" else "0"))

    _rewrite_labels(folder, edit)
    with pytest.raises(DatasetError, match="more than once"):
        load_labelled_folder(folder, FINDING_CODES)


def test_stray_non_dicom_files_are_skipped(folder: Path) -> None:
    (folder / "README.txt").write_text("notes")
    assert len(load_labelled_folder(folder, FINDING_CODES)) == STUDIES


def test_boxes_come_from_the_label_columns_as_image_fractions(tmp_path: Path) -> None:
    """The nodule box is centred on the labelled centre and as wide as the labelled diameter."""
    config = SynthConfig(rows=96, columns=80, spacing_mm=4.5)
    truths = generate(tmp_path, 24, seed=77, config=config)
    examples = {e.study_instance_uid: e for e in load_labelled_folder(tmp_path, FINDING_CODES)}
    checked = 0
    for truth in truths:
        example = examples[truth.study_instance_uid]
        nodule_box, consolidation_box, cardiomegaly_box = example.boxes
        assert cardiomegaly_box is None  # a size, not a place
        assert (nodule_box is None) == (truth.nodule is None)
        assert (consolidation_box is None) == (truth.consolidation is None)
        if truth.nodule is not None and nodule_box is not None:
            x, y = truth.nodule.centre_px
            assert (nodule_box[0] + nodule_box[2]) / 2 == pytest.approx(x / 80, abs=1e-3)
            assert (nodule_box[1] + nodule_box[3]) / 2 == pytest.approx(y / 96, abs=1e-3)
            width_mm = (nodule_box[2] - nodule_box[0]) * 80 * 4.5
            assert width_mm == pytest.approx(truth.nodule.diameter_mm, rel=0.01)
            checked += 1
    assert checked


# ---- the contract: values, locations, the writer --------------------------------------------


def test_default_folder_refuses_unknown_labels(folder: Path) -> None:
    """Today's writers write only 0 and 1; an unknown is accepted only when asked for."""

    def edit(rows: list[dict[str, str]]) -> None:
        rows[0]["nodule"] = "-1"

    _rewrite_labels(folder, edit)
    with pytest.raises(DatasetError, match=r"labels\.csv, line 2: nodule must be 0 or 1, not '-1'"):
        load_labelled_folder(folder, FINDING_CODES)


def test_unknown_labels_are_read_as_unknown_when_allowed(folder: Path) -> None:
    def edit(rows: list[dict[str, str]]) -> None:
        rows[0]["nodule"] = "-1"
        rows[1]["consolidation"] = ""

    _rewrite_labels(folder, edit)
    examples = load_labelled_folder(folder, FINDING_CODES, allow_unknown=True)
    assert examples[0].labels[0] == UNKNOWN_LABEL
    assert examples[1].labels[1] == UNKNOWN_LABEL
    assert all(label in (0, 1) for e in examples[2:] for label in e.labels)
    # an unknown finding has no box, whatever its location columns say
    assert examples[0].boxes[0] is None and examples[1].boxes[1] is None


@pytest.mark.parametrize("value", ["2", "yes", " 1", "unknown"])
def test_a_bad_value_is_refused_even_when_unknowns_are_allowed(folder: Path, value: str) -> None:
    def edit(rows: list[dict[str, str]]) -> None:
        rows[6]["cardiomegaly"] = value

    _rewrite_labels(folder, edit)
    with pytest.raises(
        DatasetError,
        match=rf"{folder}/labels\.csv, line 8: cardiomegaly must be 0, 1, -1 or empty, "
        rf"not '{value}'",
    ):
        load_labelled_folder(folder, FINDING_CODES, allow_unknown=True)


def test_any_finding_of_the_catalogue_can_be_read_with_its_locations(folder: Path) -> None:
    """The reader knows no finding by name: a column and its location columns are enough."""
    with (folder / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    info = read_instance(next(folder.glob("study-*/IM-0001.dcm"))).info
    for n, row in enumerate(rows):
        row["effusion"] = str(n % 2)
        if n % 2:
            row.update(effusion_x0="12", effusion_y0="24", effusion_x1="48", effusion_y1="72")
    write_labels(
        folder / "labels.csv",
        rows,
        [*LABEL_COLUMNS, "effusion", "effusion_x0", "effusion_y0", "effusion_x1", "effusion_y1"],
    )
    examples = load_labelled_folder(folder, ["effusion", "nodule"])
    assert [e.labels[0] for e in examples] == [n % 2 for n in range(STUDIES)]
    w, h = info.columns, info.rows
    for n, example in enumerate(examples):
        assert example.boxes[0] == ((12 / w, 24 / h, 48 / w, 72 / h) if n % 2 else None)


def test_what_the_writer_writes_the_reader_reads(tmp_path: Path) -> None:
    rows = [
        {"study_instance_uid": "1.2.3", "nodule": "1", "patient_id": "P1"},
        {"study_instance_uid": "1.2.4", "nodule": "0", "view": "AP"},
    ]
    columns = ["study_instance_uid", "nodule", "patient_id", "view"]
    path = write_labels(tmp_path / "labels.csv", rows, columns)
    assert [p.name for p in tmp_path.iterdir()] == ["labels.csv"]  # no partial file left over
    assert path.read_bytes().startswith(b"study_instance_uid,nodule,patient_id,view\r\n")
    assert read_labels(path, ["nodule"]) == [
        {"study_instance_uid": "1.2.3", "nodule": "1", "patient_id": "P1", "view": ""},
        {"study_instance_uid": "1.2.4", "nodule": "0", "patient_id": "", "view": "AP"},
    ]


def test_the_writer_refuses_a_value_without_a_column(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ctr"):
        write_labels(
            tmp_path / "labels.csv",
            [{"study_instance_uid": "1", "ctr": "0.4"}],
            ["study_instance_uid"],
        )
    assert not list(tmp_path.iterdir())


def test_a_byte_order_mark_and_blank_lines_are_tolerated(
    folder: Path, generated: tuple[Path, list[StudyTruth]]
) -> None:
    """Spreadsheets save CSV with a byte-order mark; the labels are the same."""
    path = folder / "labels.csv"
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes() + b"\r\n\r\n")
    examples = load_labelled_folder(folder, FINDING_CODES)
    assert [e.labels for e in examples] == [
        tuple(t.findings[code] for code in FINDING_CODES) for t in generated[1]
    ]
