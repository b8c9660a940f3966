"""`diagnostics screen` and `inspect` on folders as people have them: a synth folder with its
labels.csv, notes and hidden files, a DICOMDIR, a decoder that fails noisily."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file
from pydicom.fileset import FileSet

from tests.helpers.cli import run_cli


@pytest.fixture(scope="module")
def synth_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("manners") / "synth"
    done = run_cli(
        "synth", "--out", out, "--studies", "2", "--seed", "5", "--rows", "320", "--columns", "320",
        "--spacing", "1.28",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.slow
def test_a_synth_folder_screens_with_exit_0(synth_folder: Path, tmp_path: Path) -> None:
    folder = tmp_path / "in"
    shutil.copytree(synth_folder, folder)
    (folder / "notes.txt").write_text("night shift\n")
    (folder / "meta.json").write_text("{}\n")
    (folder / ".DS_Store").write_bytes(b"\0\1junk")
    done = run_cli("screen", folder, "--out", tmp_path / "out", "--no-dicom")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    skipped = sorted(Path(s["file"]).name for s in summary["skipped_files"])
    assert skipped == ["labels.csv", "meta.json", "notes.txt"]
    assert summary["rejected_files"] == 0 and summary["analyzed"] == 2
    assert done.stderr == ""


@pytest.mark.slow
def test_a_file_named_dcm_that_is_not_dicom_is_still_rejected(
    synth_folder: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    shutil.copytree(synth_folder, folder)
    (folder / "IM-9999.dcm").write_text("a,b\n")
    done = run_cli("screen", folder, "--out", tmp_path / "out", "--no-dicom")
    assert done.returncode == 1
    summary = json.loads(done.stdout)
    assert summary["rejected_files"] == 1 and summary["analyzed"] == 2
    assert [Path(s["file"]).name for s in summary["skipped_files"]] == ["labels.csv"]


@pytest.mark.slow
def test_a_dicomdir_is_read_as_an_index(synth_folder: Path, tmp_path: Path) -> None:
    """A DICOMDIR written by pydicom's FileSet: its files are screened, itself is not a study."""
    fileset = FileSet()
    for path in sorted(synth_folder.glob("study-*/*.dcm")):
        fileset.add(pydicom.dcmread(path))
    media = tmp_path / "media"
    fileset.write(media)
    done = run_cli("screen", media / "DICOMDIR", "--out", tmp_path / "out", "--no-dicom")
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads(done.stdout)
    assert summary["studies"] == 2 and summary["analyzed"] == 2
    assert summary["dicomdir"] == [str(media / "DICOMDIR")]
    # The folder holding it: DICOMDIR and the files it lists are read once each.
    again = run_cli("screen", media, "--out", tmp_path / "out2", "--no-dicom")
    assert again.returncode == 0 and json.loads(again.stdout)["studies"] == 2


@pytest.mark.slow
def test_a_dicomdir_listing_a_missing_file_rejects_that_file(
    synth_folder: Path, tmp_path: Path
) -> None:
    fileset = FileSet()
    for path in sorted(synth_folder.glob("study-*/*.dcm")):
        fileset.add(pydicom.dcmread(path))
    media = tmp_path / "media"
    fileset.write(media)
    lost = Path(next(iter(FileSet(pydicom.dcmread(media / "DICOMDIR")))).path)
    lost.unlink()
    done = run_cli("screen", media / "DICOMDIR", "--out", tmp_path / "out", "--no-dicom")
    assert done.returncode == 1
    summary = json.loads(done.stdout)
    assert summary["analyzed"] == 1 and summary["rejected_files"] == 1
    rejected = json.loads((tmp_path / "out" / "rejected.jsonl").read_text())
    assert "listed in" in rejected["message"] and "no such file" in rejected["message"]


@pytest.mark.slow
def test_dcmmkdir_dicomdir_is_read(synth_folder: Path, tmp_path: Path) -> None:
    """A DICOMDIR from DCMTK's dcmmkdir (file IDs are 8-character upper-case names)."""
    media = tmp_path / "cd"
    media.mkdir()
    for number, path in enumerate(sorted(synth_folder.glob("study-*/*.dcm")), start=1):
        shutil.copy(path, media / f"IM{number:06d}")
    made = subprocess.run(
        ["dcmmkdir", "+I", "+r", "-Nxc"],
        cwd=media,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert (media / "DICOMDIR").exists(), made.stderr
    done = run_cli("screen", media / "DICOMDIR", "--out", tmp_path / "out", "--no-dicom")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["analyzed"] == 2


def test_inspect_of_a_broken_jpeg2000_prints_one_line() -> None:
    path = get_testdata_file("JPEG2000-embedded-sequence-delimiter.dcm")
    done = run_cli("inspect", path)
    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: CorruptDicomError: ")


def test_verbose_lets_third_party_logs_through() -> None:
    path = get_testdata_file("JPEG2000-embedded-sequence-delimiter.dcm")
    done = run_cli("-v", "inspect", path)
    assert done.returncode == 2
    assert "pydicom" in done.stderr and len(done.stderr.splitlines()) > 1


def test_help_documents_the_exit_status() -> None:
    done = run_cli("screen", "--help")
    assert "Exit status: 0 when every study was screened" in done.stdout
    assert "2 on bad arguments" in done.stdout and "DICOMDIR" in done.stdout
