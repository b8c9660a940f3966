"""Feedback is checked against the result it names, stored with who and when, and audited in
the same transaction; class activation maps come back as they were stored."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from diagnostics.deid.research_export import ExportOptions, export_research
from diagnostics.errors import RequestError
from diagnostics.service.review import FeedbackInput, feedback_for, record_feedback
from diagnostics.store.sqlite import SqliteStore
from tests.helpers.synth import SynthStudies
from tests.service.reviewed import CODES, screened

ACTOR = "token:abc123"


def _data(synth_studies: SynthStudies, index: int) -> bytes:
    folder, truths = synth_studies
    return (folder / truths[index].file).read_bytes()


def test_feedback_is_stored_with_actor_and_time_and_audited(
    tmp_path: Path, synth_studies: SynthStudies
) -> None:
    store = SqliteStore(tmp_path)
    study, sop, version = screened(store, _data(synth_studies, 0), {"nodule"})
    agree = record_feedback(
        store, FeedbackInput(study, version, "nodule", "agree", "PHI-like free text"), ACTOR
    )
    missed = record_feedback(
        store,
        FeedbackInput(
            study,
            version,
            "consolidation",
            "missed",
            x=100.0,
            y=120.0,
            box=(80.0, 100.0, 140.0, 160.0),
        ),
        ACTOR,
    )
    assert agree.sop_instance_uid == sop == missed.sop_instance_uid  # the finding's image
    stored = feedback_for(store, study)
    assert [(f.code, f.verdict, f.actor) for f in stored] == [
        ("nodule", "agree", ACTOR),
        ("consolidation", "missed", ACTOR),
    ]
    assert stored[1].box == (80.0, 100.0, 140.0, 160.0) and stored[0].created > 0
    audits = store.audit_entries("feedback_recorded")
    assert [a["detail"]["feedback_id"] for a in audits] == [agree.id, missed.id]  # type: ignore[index]
    assert all(a["actor"] == ACTOR for a in audits)
    assert "PHI-like" not in json.dumps(audits)  # free text stays out of the audit log


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": 7}, "has no result version 7"),
        ({"code": "pneumothorax"}, "not a finding of this result"),
        ({"x": 9999.0, "y": 5.0}, "outside the"),
        ({"sop_instance_uid": "1.2.3.4"}, "not part of study"),
    ],
)
def test_feedback_that_does_not_fit_its_result_is_refused(
    tmp_path: Path, synth_studies: SynthStudies, change: dict[str, object], message: str
) -> None:
    store = SqliteStore(tmp_path)
    study, _, version = screened(store, _data(synth_studies, 1), set())
    fields: dict[str, object] = {
        "study_instance_uid": study,
        "version": version,
        "code": "nodule",
        "verdict": "missed",
        "x": 10.0,
        "y": 10.0,
        **change,
    }
    with pytest.raises(RequestError, match=message):
        record_feedback(store, FeedbackInput(**fields), ACTOR)  # type: ignore[arg-type]
    assert feedback_for(store, study) == []


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"verdict": "maybe"}, "verdict must be one of"),
        ({"verdict": "missed"}, "needs its location"),
        ({"verdict": "comment"}, "needs some text"),
        ({"verdict": "agree", "x": 1.0}, "both x and y"),
        ({"verdict": "agree", "x": -1.0, "y": 2.0}, "not negative"),
        ({"verdict": "missed", "x": 5.0, "y": 5.0, "box": (9.0, 1.0, 3.0, 4.0)}, "not a box"),
        ({"verdict": "agree", "comment": "x" * 2001}, "at most 2000"),
    ],
)
def test_malformed_feedback_is_refused_on_construction(
    fields: dict[str, object], message: str
) -> None:
    with pytest.raises(RequestError, match=message):
        FeedbackInput("1.2.3", 1, "nodule", **fields)  # type: ignore[arg-type]


def test_no_feedback_on_a_study_the_model_did_not_analyse(
    tmp_path: Path, synth_studies: SynthStudies
) -> None:
    store = SqliteStore(tmp_path)
    study, _, version = screened(store, _data(synth_studies, 2), set(), status="not_analyzed")
    with pytest.raises(RequestError, match="was not analysed"):
        record_feedback(store, FeedbackInput(study, version, "nodule", "agree"), ACTOR)


def test_class_maps_are_kept_with_their_result(tmp_path: Path, synth_studies: SynthStudies) -> None:
    store = SqliteStore(tmp_path)
    study, sop, version = screened(store, _data(synth_studies, 3), {"nodule"})
    (maps,) = store.class_maps(study, version)
    assert maps.sop_instance_uid == sop and maps.codes == CODES
    assert maps.maps.shape == (3, 10, 10) and np.all(maps.for_code("nodule") == -2.0)
    assert store.class_maps(study, version + 1) == []


def test_research_export_reads_the_feedback_table_de_identified(
    tmp_path: Path, synth_studies: SynthStudies
) -> None:
    store = SqliteStore(tmp_path / "store")
    study, _, version = screened(store, _data(synth_studies, 4), {"nodule"})
    record_feedback(
        store,
        FeedbackInput(study, version, "nodule", "missed", "a name here", x=30.0, y=40.0),
        ACTOR,
    )
    store.close()
    export_research(ExportOptions(tmp_path / "store", tmp_path / "export"))
    (line,) = (tmp_path / "export" / "feedback.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["verdict"] == "missed" and record["code"] == "nodule"
    assert (record["x"], record["y"], record["version"]) == (30.0, 40.0, version)
    assert record["study_instance_uid"] != study  # mapped like the images
    assert record["actor"] and record["actor"] != ACTOR  # pseudonymised
    assert record["comment_withheld"] is True and "a name here" not in line
    with sqlite3.connect(tmp_path / "store" / "intake.sqlite3") as db:
        assert db.execute("SELECT COUNT(*) FROM feedback").fetchone()[0] == 1
