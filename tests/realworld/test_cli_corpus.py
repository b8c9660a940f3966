"""The real-world header corpus through `diagnostics screen`, and every output it writes
through dciodvfy and (SRs) PixelMed's DicomSRValidator."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydicom
import pytest

from tests.realworld.checks import problems
from tests.realworld.corpus import CASES, Built, write_corpus
from tests.validators import dciodvfy, pixelmed_sr

pytestmark = pytest.mark.slow


@dataclass
class Screened:
    built: dict[str, Built]
    results: dict[str, dict[str, Any]]
    summary: dict[str, Any]
    stderr: str
    returncode: int
    out: Path


@pytest.fixture(scope="module")
def screened(tmp_path_factory: pytest.TempPathFactory) -> Screened:
    """The whole corpus, with a labels.csv and a note beside it, screened in one CLI run."""
    root = tmp_path_factory.mktemp("realworld-cli")
    built = {b.case.name: b for b in write_corpus(root / "in", "cli")}
    (root / "in" / "labels.csv").write_text("study_instance_uid,nodule\n")
    (root / "in" / "README.txt").write_text("chest films from the night shift\n")
    out = root / "out"
    run = subprocess.run(
        [sys.executable, "-m", "diagnostics.cli", "screen", str(root / "in"), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    results = {r["study_instance_uid"]: r for r in map(json.loads, lines)}
    return Screened(built, results, json.loads(run.stdout), run.stderr, run.returncode, out)


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 80
    assert sum(c.expect == "analyzed" for c in CASES) >= 40
    assert sum(c.expect == "not_analyzed" for c in CASES) >= 20


def test_every_study_has_one_result_and_no_traceback(screened: Screened) -> None:
    assert len(screened.results) == len(CASES) == screened.summary["studies"]
    assert "Traceback" not in screened.stderr, screened.stderr[-3000:]
    skipped = sorted(Path(s["file"]).name for s in screened.summary["skipped_files"])
    assert skipped == ["README.txt", "labels.csv"]
    assert screened.summary["rejected_files"] == 0 and screened.summary["failed"] == 0
    failures = screened.summary["output_failures"]
    assert screened.returncode == (1 if failures else 0), screened.summary


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_case(screened: Screened, name: str) -> None:
    built = screened.built[name]
    result = screened.results[built.study_uid]
    assert not problems(built, result), problems(built, result)
    folder = screened.out / built.study_uid
    if built.case.expect == "analyzed":
        names = sorted(p.name for p in folder.iterdir())
        assert names[-1] == "SR.dcm" and "OV-0001.dcm" in names and "PR-0001.dcm" in names
    else:
        assert not folder.exists()


def _outputs(screened: Screened) -> list[Path]:
    return sorted(screened.out.glob("*/*.dcm"))


@pytest.mark.parametrize("name", [c.name for c in CASES if c.expect == "analyzed"])
def test_outputs_pass_dciodvfy(screened: Screened, name: str) -> None:
    folder = screened.out / screened.built[name].study_uid
    files = sorted(folder.glob("*.dcm"))
    assert files, f"{name}: no outputs"
    for path in files:
        verdict = dciodvfy(path)
        assert verdict.errors == [], (path.name, verdict.errors)
        ds = pydicom.dcmread(path)
        assert ds.StudyInstanceUID == screened.built[name].study_uid


SR_SAMPLE = [
    "charset-iso-ir-144-cyrillic",
    "charset-iso-ir-192-uzbek-latin",
    "charset-iso-2022-ir-144-cyrillic",
    "cr",
    "sc-digitized-film-grey-8-bit-cr",
    "pa-and-lateral-study",
    "missing-PatientOrientation",
]
"""SRs whose source headers differ most (character sets, SOP classes, a two-view study, a
missing attribute the SR refers to); PixelMed takes seconds per SR, so not all of them."""


def test_srs_pass_pixelmed(screened: Screened) -> None:
    paths = [screened.out / screened.built[n].study_uid / "SR.dcm" for n in SR_SAMPLE]
    missing = [p for p in paths if not p.exists()]
    present = [p for p in paths if p.exists()]
    verdicts = pixelmed_sr(present) if present else {}
    bad = {str(p): v.errors for p, v in verdicts.items() if v.errors}
    assert not bad, bad
    assert not missing, f"{len(missing)} SRs were not written: {missing[:5]}"
