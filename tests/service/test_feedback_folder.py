"""`diagnostics feedback export` writes a folder that training's `load_labelled_folder` reads,
with the labels the verdicts imply and the locations radiologists marked."""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from diagnostics.cli import main
from diagnostics.datasets.labelled import load_labelled_folder
from diagnostics.errors import ConfigurationError
from diagnostics.service.feedback_folder import export_feedback
from diagnostics.service.review import FeedbackInput, record_feedback
from diagnostics.store.sqlite import SqliteStore
from tests.helpers.synth import SynthStudies
from tests.service.reviewed import CODES, screened

ACTOR = "token:abc123"


@pytest.fixture
def store(tmp_path: Path, synth_studies: SynthStudies) -> tuple[SqliteStore, dict[str, str]]:
    """Four screened studies with feedback of every kind; name -> Study Instance UID."""
    folder, truths = synth_studies
    store = SqliteStore(tmp_path / "storage")
    uids = {}

    def add(name: str, index: int, flagged: set[str]) -> tuple[str, int]:
        study, _, version = screened(store, (folder / truths[index].file).read_bytes(), flagged)
        uids[name] = study
        return study, version

    def say(study: str, version: int, code: str, verdict: str, **more: object) -> None:
        record_feedback(store, FeedbackInput(study, version, code, verdict, **more), ACTOR)  # type: ignore[arg-type]

    agreed, v = add("agreed", 0, {"nodule"})
    say(agreed, v, "nodule", "agree")
    say(agreed, v, "consolidation", "agree")
    say(agreed, v, "cardiomegaly", "agree")
    say(agreed, v, "consolidation", "disagree")  # changed their mind: the latest counts
    corrected, v = add("corrected", 1, {"cardiomegaly"})
    say(corrected, v, "cardiomegaly", "disagree")
    say(corrected, v, "nodule", "missed", x=150.0, y=90.0, box=(140.0, 80.0, 160.0, 100.0))
    say(corrected, v, "consolidation", "missed", x=60.0, y=200.0, box=(40.0, 180.0, 90.0, 230.0))
    partial, v = add("partial", 2, {"nodule"})
    say(partial, v, "nodule", "disagree")
    chatty, v = add("chatty", 3, set())
    say(chatty, v, "nodule", "comment", comment="looks fine")
    add("unreviewed", 4, {"nodule"})
    return store, uids


def _rows(out: Path) -> dict[str, dict[str, str]]:
    with (out / "labels.csv").open(newline="") as handle:
        return {r["study_instance_uid"]: r for r in csv.DictReader(handle)}


def test_export_is_read_by_training_with_the_implied_labels(
    tmp_path: Path, store: tuple[SqliteStore, dict[str, str]]
) -> None:
    _, uids = store
    out = tmp_path / "fb"
    summary = export_feedback(tmp_path / "storage", out)
    assert summary.studies == 3 and summary.skipped == {"only comments": 1}
    examples = {e.study_instance_uid: e for e in load_labelled_folder(out, CODES)}
    assert set(examples) == {uids["agreed"], uids["corrected"], uids["partial"]}
    assert examples[uids["agreed"]].labels == (1, 1, 0)  # agree, disagree with 0, agree
    assert examples[uids["corrected"]].labels == (1, 1, 0)  # missed, missed, disagree with 1
    assert examples[uids["partial"]].labels == (0, 0, 0)  # disagree; the rest from the model

    rows = _rows(out)
    partial = rows[uids["partial"]]
    assert partial["label_source_nodule"] == "feedback"
    assert partial["label_source_consolidation"] == "model"
    corrected = rows[uids["corrected"]]
    assert (corrected["nodule_x"], corrected["nodule_y"]) == ("150.0", "90.0")
    assert float(corrected["nodule_diameter_mm"]) > 0
    assert [corrected[f"consolidation_{c}"] for c in ("x0", "y0", "x1", "y1")] == [
        "40",
        "180",
        "90",
        "230",
    ]
    # Locations reach training as boxes (fractions of the image); model boxes never do.
    boxes = examples[uids["corrected"]].boxes
    assert boxes[0] is not None and boxes[1] is not None and boxes[2] is None
    assert examples[uids["agreed"]].boxes == (None, None, None)
    assert rows[uids["agreed"]]["nodule_x"] == ""
    # Our own counters name the files, and each holds the study's image.
    assert sorted(r["file"] for r in rows.values()) == [
        f"study-{n:05d}/IM-0001.dcm" for n in (1, 2, 3)
    ]
    assert summary.from_feedback == 7


def test_a_finding_only_some_studies_were_screened_for_is_left_out(
    tmp_path: Path, synth_studies: SynthStudies
) -> None:
    """A newer model added pneumothorax: a blank cell in labels.csv would stop training."""
    folder, truths = synth_studies
    store = SqliteStore(tmp_path / "storage")
    old, _, v1 = screened(store, (folder / truths[0].file).read_bytes(), {"nodule"})
    new, _, v2 = screened(
        store,
        (folder / truths[1].file).read_bytes(),
        {"pneumothorax"},
        codes=(*CODES, "pneumothorax"),
    )
    for study, version in ((old, v1), (new, v2)):
        record_feedback(store, FeedbackInput(study, version, "nodule", "agree"), ACTOR)
    summary = export_feedback(tmp_path / "storage", tmp_path / "fb")
    assert summary.studies == 2 and summary.findings_left_out == {"pneumothorax": 1}
    with (tmp_path / "fb" / "labels.csv").open(newline="") as handle:
        columns = csv.DictReader(handle).fieldnames or []
    assert "pneumothorax" not in columns and "label_source_pneumothorax" not in columns
    examples = load_labelled_folder(tmp_path / "fb", CODES)
    assert sorted(e.labels for e in examples) == [(0, 0, 0), (1, 0, 0)]
    assert summary.positives == {"nodule": 1, "consolidation": 0, "cardiomegaly": 0}


def test_skip_leaves_out_studies_with_findings_nobody_judged(
    tmp_path: Path, store: tuple[SqliteStore, dict[str, str]]
) -> None:
    _, uids = store
    summary = export_feedback(tmp_path / "storage", tmp_path / "fb", unreviewed="skip")
    assert set(_rows(tmp_path / "fb")) == {uids["agreed"], uids["corrected"]}
    assert summary.skipped == {"only comments": 1, "not every finding reviewed": 1}


@pytest.fixture
def pydicom_log_level() -> Iterator[None]:
    """`main` quietens pydicom's logger for the process; give other tests theirs back."""
    logger = logging.getLogger("pydicom")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.mark.usefixtures("pydicom_log_level")
def test_cli_writes_once_and_never_overwrites(
    tmp_path: Path,
    store: tuple[SqliteStore, dict[str, str]],
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = ["feedback", "export", "--storage", str(tmp_path / "storage"), "--out"]
    assert main([*args, str(tmp_path / "fb")]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["studies"] == 3 and report["labels"].endswith("labels.csv")
    assert main([*args, str(tmp_path / "fb")]) == 2
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(ConfigurationError, match="no intake database"):
        export_feedback(tmp_path / "nowhere", tmp_path / "other")
    assert not list(tmp_path.glob(".other*"))


def test_an_image_purged_during_the_export_is_a_named_skip(
    tmp_path: Path, store: tuple[SqliteStore, dict[str, str]]
) -> None:
    """The export snapshots the paths, then copies: the retention window purging an image in
    between leaves that study out (counted and named), never fails the whole export."""
    from diagnostics.service.feedback_folder import _read, _write

    db, uids = store
    snapshot = _read(tmp_path / "storage")
    for _, path in db.instances_of(uids["agreed"]):
        path.unlink()  # what a purge does after its rows commit
    out = tmp_path / "during"
    out.mkdir()
    studies, skipped, *_, missing = _write(out, snapshot, "model")
    assert studies == 2 and skipped == {"only comments": 1, "image missing": 1}
    assert missing == (uids["agreed"],)
    assert len(load_labelled_folder(out, CODES)) == 2

    db.purge(time.time() + 86400)  # before the next export: every image is gone
    summary = export_feedback(tmp_path / "storage", tmp_path / "after")
    assert summary.studies == 0 and summary.skipped["image missing"] == 3
    assert set(summary.as_dict()["images_missing"]) == {  # type: ignore[call-overload]
        uids["agreed"],
        uids["corrected"],
        uids["partial"],
    }
