"""`diagnostics screen` as a subprocess: results.jsonl, DICOM outputs, exit status."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pydicom
import pytest

from diagnostics.results import StudyResult
from tests.helpers.cli import run_cli
from tests.helpers.synth import BUNDLED, SynthStudies

pytestmark = pytest.mark.slow  # each runs `diagnostics screen`: ~10 s of CPU to load the model


def _results(out: Path) -> list[StudyResult]:
    lines = (out / "results.jsonl").read_text().splitlines()
    return [StudyResult.from_json(line) for line in lines]


def test_screen_folder_writes_results_and_dicom(
    synth_studies: SynthStudies, tmp_path: Path
) -> None:
    folder, truths = synth_studies
    junk = tmp_path / "in" / "junk.dcm"
    junk.parent.mkdir()
    junk.write_bytes(b"not dicom")
    out = tmp_path / "out"
    done = run_cli(
        "screen", folder / "study-00001", folder / "study-00002", junk.parent, "--out", out
    )
    assert done.returncode == 1, done.stderr  # one file was rejected
    summary = json.loads(done.stdout)
    assert summary["studies"] == 2 and summary["analyzed"] == 2 and summary["rejected_files"] == 1
    results = _results(out)
    assert {r.study_instance_uid for r in results} == {t.study_instance_uid for t in truths[:2]}
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert rejected[0]["error"] == "NotDicomError" and rejected[0]["file"].endswith("junk.dcm")
    assert summary["dicom_outputs"], summary
    for path in summary["dicom_outputs"]:
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID in {r.study_instance_uid for r in results}
        assert Path(path).parent.parent == out


def test_missing_model_gives_failed_results_not_normal(
    synth_studies: SynthStudies, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    done = run_cli("screen", synth_studies.files[0], "--out", out, "--model", tmp_path / "nowhere")
    assert done.returncode == 1
    (result,) = _results(out)
    assert result.status == "failed" and "the model could not be loaded" in str(result.reason)


def test_mismatched_model_is_a_failed_study(synth_studies: SynthStudies, tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    shutil.copytree(BUNDLED, package)
    manifest = json.loads((package / "manifest.json").read_text())
    manifest["input"]["height"] = manifest["preprocessing"]["size"][0] = 224
    (package / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    done = run_cli("screen", synth_studies.files[0], "--out", out, "--model", package, "--no-dicom")
    assert done.returncode == 1
    (result,) = _results(out)
    assert result.status == "failed" and "axis 2 is 320" in str(result.reason)


def test_screen_without_files_is_an_argument_error(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    done = run_cli("screen", tmp_path / "empty", "--out", tmp_path / "out")
    assert done.returncode == 2 and done.stderr.startswith("error: ConfigurationError: no files")
