"""A hospital's own data: a PACS export in any structure + a CSV keyed by accession number,
checked (`diagnostics labels check`), then trained with a site finding catalogue."""

from __future__ import annotations

import csv
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import UID, ExplicitVRLittleEndian, generate_uid

from diagnostics.package import load_package
from diagnostics.synth import SynthConfig, generate

STUDIES = 100

SITE_CATALOGUE = """
[[findings]]
code = "silicosis"
display = "Silicosis"
snomed = "805002"
snomed_meaning = "Silicosis"
on_flag = "routine"

[[findings]]
code = "pneumothorax"
display = "Collapsed lung (pneumothorax)"
"""

RECIPE = """
name = "site-tiny"
version = "0.0.1"
model = "compact"
findings = ["consolidation", "pneumothorax", "silicosis"]
seed = 5
package = "package"

[data]
layout = "labelled"
train = "pacs"
validation_fraction = 0.3

[preprocessing]
size = [64, 64]

[training]
epochs = 2
batch_size = 16
"""


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "diagnostics.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )


def _dicomdir(path: Path) -> None:
    """A minimal DICOMDIR, as PACS exports to media carry one."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID("1.2.840.10008.1.3.10")
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.FileSetID = "EXPORT"
    ds.DirectoryRecordSequence = []
    ds.save_as(path, enforce_file_format=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PACS export: nested folders with random names, extension-less files, a DICOMDIR, and a
    CSV keyed by accession number with one row lacking its files and one study lacking its row.
    Pneumothorax copies the consolidation truth and silicosis the cardiomegaly one, so both
    have something to learn."""
    base = tmp_path_factory.mktemp("site")
    truth = generate(base / "synth", STUDIES, 61, SynthConfig(rows=96, columns=96, spacing_mm=4.2))
    rng = random.Random(7)
    pacs = base / "pacs"
    rows = []
    for item in truth:
        source = base / "synth" / item.label_row()["file"]
        ds = pydicom.dcmread(source)
        target = pacs / f"{rng.getrandbits(32):08X}" / f"S{rng.getrandbits(16):04x}"
        target.mkdir(parents=True)
        ds.save_as(target / f"{rng.getrandbits(40):010x}", enforce_file_format=True)
        row = item.label_row()
        rows.append(
            {
                "accession_number": str(ds.AccessionNumber),
                "consolidation": row["consolidation"],
                "cardiomegaly": row["cardiomegaly"],
                "pneumothorax": row["consolidation"],
                "silicosis": row["cardiomegaly"],
            }
        )
    _dicomdir(pacs / "DICOMDIR")
    rows[3]["silicosis"] = "-1"  # unknown
    rows[4]["silicosis"] = ""  # unknown
    rows.pop(10)  # a study without a row
    rows.append({**rows[0], "accession_number": "NOFILES1"})  # a row without files
    with (pacs / "labels.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    (base / "site.toml").write_text(SITE_CATALOGUE)
    (base / "recipe.toml").write_text(RECIPE)
    return base


def test_labels_check_reports_what_the_export_holds(site: Path) -> None:
    result = _cli("labels", "check", "pacs", "--findings", "site.toml", "--json", cwd=site)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["key"] == "accession_number" and report["ok"]
    assert report["rows"] == STUDIES and report["matched"] == STUDIES - 1
    assert report["rows_without_files"] == 1 and report["rows_without_files_lines"] == [101]
    assert report["studies_without_rows"] == 1
    assert report["unreadable_files"] == {}  # the DICOMDIR is no unreadable image
    assert set(report["findings"]) == {"consolidation", "cardiomegaly", "pneumothorax", "silicosis"}
    assert report["findings"]["silicosis"]["unknown"] == 2
    counts = report["findings"]["consolidation"]
    assert counts["positives"] + counts["negatives"] == STUDIES - 1 and counts["positives"] > 0
    assert report["image_rows"] == {"min": 96, "median": 96, "max": 96}
    assert set(report["views"]) <= {"PA", "AP"} and report["modalities"]
    assert "NOFILES1" not in result.stdout  # line numbers, never identifiers
    text = _cli("labels", "check", "pacs", "--findings", "site.toml", cwd=site)
    assert (
        "rows without files 1" in text.stdout and "warning: 1 row(s) have no DICOM" in text.stdout
    )


def test_a_finding_without_positives_is_blocking(site: Path, tmp_path: Path) -> None:
    labels = (site / "pacs" / "labels.csv").read_text().splitlines()
    header = labels[0] + ",nodule"
    body = [line + ",0" for line in labels[1:]]
    copy = tmp_path / "copy"
    shutil.copytree(site / "pacs", copy)
    (copy / "labels.csv").write_text("\n".join([header, *body]) + "\n")
    result = _cli("labels", "check", "copy", "--finding", "nodule", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "BLOCKING: nodule: no positive label" in result.stdout


@pytest.mark.parametrize(
    ("catalogue", "message"),
    [
        (
            '[[findings]]\ncode = "silicosis"\ndisplay = "Silicosis"\n',
            r"bad\.toml: findings\[0\] \(silicosis\): 'silicosis' is not in the shipped "
            r"catalogue, so it needs snomed, snomed_meaning",
        ),
        (
            '[[findings]]\ncode = "nodule"\non_flag = "routine"\nurgent_threshold = 0.9\n',
            r"findings\[0\] \(nodule\): urgent_threshold is only for on_flag = 'urgent'",
        ),
        (
            '[[findings]]\ncode = "nodule"\n[[findings]]\ncode = "Bad Code"\n',
            r"findings\[1\] \(Bad Code\): code: String should match pattern",
        ),
        ('[[findings]]\ncode = "nodule"\ncolour = "red"\n', r"findings\[0\] \(nodule\): colour"),
        ('[[finding]]\ncode = "nodule"\n', r"unknown table\(s\) finding"),
    ],
)
def test_bad_catalogue_entries_are_refused_naming_file_and_entry(
    tmp_path: Path, catalogue: str, message: str
) -> None:
    (tmp_path / "bad.toml").write_text(catalogue)
    (tmp_path / "data").mkdir()
    result = _cli("labels", "check", "data", "--findings", "bad.toml", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ConfigurationError: ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert re.search(message, result.stderr), result.stderr


@pytest.mark.slow
def test_a_site_catalogue_adding_findings_trains_on_the_pacs_export(site: Path) -> None:
    result = _cli(
        "train", "recipe.toml", "--findings", "site.toml", "--quiet", "--allow-weak", cwd=site
    )
    assert result.returncode == 0, result.stderr
    assert "Label check of" in result.stderr and "matched studies 99" in result.stderr
    manifest = load_package(site / "package").manifest
    specs = {f.code: f for f in manifest.findings}
    assert list(specs) == ["consolidation", "pneumothorax", "silicosis"]
    assert specs["silicosis"].concept.value == "805002" and specs["silicosis"].on_flag == "routine"
    assert specs["pneumothorax"].display == "Collapsed lung (pneumothorax)"
    assert specs["pneumothorax"].concept.value == "36118008"  # the rest from the shipped entry
    assert specs["pneumothorax"].on_flag == "urgent"
    total = manifest.training.train.studies + manifest.training.validation.studies
    assert total == STUDIES - 1


def test_a_recipe_without_the_site_catalogue_names_the_unknown_finding(site: Path) -> None:
    result = _cli("train", "recipe.toml", "--quiet", cwd=site)
    assert result.returncode == 2
    assert "unknown finding(s) silicosis" in result.stderr and "--findings" in result.stderr
