"""The `diagnostics` command line, run as a real subprocess the way people and scripts run it.

The contract under test (`diagnostics.cli`): JSON on stdout and exit 0 on success; for input
that cannot be used, exit 2 and exactly one line `error: <ErrorClass>: <message>` on stderr,
never a traceback. A subprocess is the only honest check of that: it includes interpreter start-up,
logging set-up and whatever a library prints to stderr on its own.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from tests.dicom.corpus import Corpus, build_corpus, uid
from tests.helpers.cli import assert_refused, run_cli


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return build_corpus(tmp_path_factory.mktemp("cli-corpus"))


def test_inspect_prints_the_instance_as_json(corpus: Corpus) -> None:
    result = run_cli("inspect", corpus.valid["jpeg-ls-lossless"].path)
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["study_instance_uid"] == uid("study-1")
    assert summary["series_instance_uid"] == uid("series-1")
    assert summary["sop_instance_uid"] == uid("instance-1")
    assert summary["transfer_syntax"]["uid"] == "1.2.840.10008.1.2.4.80"
    assert (summary["rows"], summary["columns"]) == (64, 80)
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("case", "error_class", "word"),
    [
        ("text", "NotDicomError", "not a DICOM file"),
        ("truncated-header", "CorruptDicomError", "truncated"),
        ("missing-study-uid", "CorruptDicomError", "StudyInstanceUID"),
        ("rle-segment-overrun", "CorruptDicomError", "RLE segment"),
        ("image-without-pixel-data", "MissingPixelDataError", "PixelData"),
        ("comprehensive-sr", "NotAnImageError", "not an image"),
        ("palette-color", "UnsupportedDicomError", "PALETTE COLOR"),
        ("dimension-bomb", "TooLargeError", "would decode"),
    ],
)
def test_inspect_refuses_unusable_input_in_one_line(
    corpus: Corpus, case: str, error_class: str, word: str
) -> None:
    path = corpus.malformed[case].path
    message = assert_refused(run_cli("inspect", path), error_class)
    assert word in message
    assert str(path) in message


def test_inspect_of_a_missing_file_is_an_input_error(tmp_path: Path) -> None:
    message = assert_refused(run_cli("inspect", tmp_path / "absent.dcm"), "InputError")
    assert "no such file" in message


def test_studies_groups_files_and_lists_refusals(corpus: Corpus, tmp_path: Path) -> None:
    folder = tmp_path / "incoming"
    folder.mkdir()
    for name in ("explicit-vr-little-endian", "rle", "multiframe-native", "rgb-native"):
        (folder / f"{name}.dcm").write_bytes(corpus.valid[name].path.read_bytes())
    (folder / "notes.txt").write_text("not an image\n")
    result = run_cli("studies", folder)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    [study] = listing["studies"]
    assert study["study_instance_uid"] == uid("study-1")
    assert study["duplicates"] == 1  # rle.dcm is explicit-vr-little-endian.dcm, compressed
    [series] = study["series"]
    assert len(series["files"]) == 3
    assert [(r["file"], r["error"]) for r in listing["refused"]] == [
        (str(folder / "notes.txt"), "NotDicomError")
    ]


def test_synth_writes_studies_and_labels(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    result = run_cli(
        "synth", "--out", out, "--studies", "3", "--seed", "1",
        "--rows", "128", "--columns", "128", "--spacing", "2.5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["studies"] == 3
    with (out / "labels.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    assert len({row["study_instance_uid"] for row in rows}) == 3
    listing = json.loads(run_cli("studies", out).stdout)
    assert {s["study_instance_uid"] for s in listing["studies"]} == {
        row["study_instance_uid"] for row in rows
    }
    assert [Path(r["file"]).name for r in listing["refused"]] == ["labels.csv"]


def test_synth_refuses_a_bad_setting_in_one_line(tmp_path: Path) -> None:
    result = run_cli(
        "synth", "--out", tmp_path / "s", "--studies", "1", "--seed", "1",
        "--rows", "4", "--columns", "4", "--spacing", "-1",
    )  # fmt: skip
    assert_refused(result, "ConfigurationError")
