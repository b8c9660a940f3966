"""The research export is trainable as it is: store -> research-export -> labels check -> train.

Labels come from the radiologists' verdicts in feedback.jsonl read against the exported
results (`diagnostics.datasets.exported`); here half the studies were flagged right and agreed
with, half flagged wrong and corrected, so the labels are the truth either way.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Literal

import pydicom
import pytest

from diagnostics.datasets import load_dataset
from diagnostics.deid.research_export import ExportOptions, export_research
from diagnostics.package import load_package
from diagnostics.results import FindingResult, InstanceResult, ModelRef, StudyResult
from diagnostics.store.records import Feedback
from diagnostics.store.sqlite import SqliteStore
from diagnostics.synth import SynthConfig, generate

STUDIES = 70
CODES = ("consolidation", "cardiomegaly")

RECIPE = """
name = "export-tiny"
version = "0.0.1"
model = "compact"
findings = ["consolidation", "cardiomegaly"]
seed = 4
package = "package"

[data]
layout = "labelled"
train = "export"
validation_fraction = 0.3

[preprocessing]
size = [64, 64]

[training]
epochs = 1
batch_size = 16
"""


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("export-train")
    truths = generate(base / "synth", STUDIES, 71, SynthConfig(rows=96, columns=96, spacing_mm=4.2))
    store = SqliteStore(base / "store")
    for index, truth in enumerate(truths):
        path = base / "synth" / truth.label_row()["file"]
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        study, sop = str(ds.StudyInstanceUID), str(ds.SOPInstanceUID)
        store.receive(path.read_bytes(), "test")
        right = index % 2 == 0  # the model's flag is right on even studies, wrong on odd ones
        findings = []
        for code in CODES:
            flagged = bool(truth.findings[code]) == right
            findings.append(
                FindingResult(
                    code=code,
                    display=code,
                    probability=0.9 if flagged else 0.1,
                    threshold=0.5,
                    flagged=flagged,
                    sop_instance_uid=sop,
                )
            )
        result = StudyResult(
            study_instance_uid=study,
            status="analyzed",
            priority="urgent" if any(f.flagged for f in findings) else "routine",
            model=ModelRef(name="cxr-demo", version="1.0.0", sha256="0" * 64),
            findings=findings,
            instances=[InstanceResult(sop_instance_uid=sop, status="analyzed")],
        )
        claim = store.claim_study(study)
        assert claim is not None and store.complete(claim, result) == 1
        with store.transaction() as tx:
            for code in CODES:
                verdict: Literal["agree", "disagree"] = "agree" if right else "disagree"
                tx.add_feedback(
                    Feedback(0, study, 1, None, code, verdict, "", None, None, None, "dr-a", 1.0)
                )
    store.close()
    export_research(ExportOptions(base / "store", base / "export"))
    (base / "recipe.toml").write_text(RECIPE)
    return base


def test_the_export_reads_as_labelled_studies_with_the_verdicts_as_labels(
    exported: Path,
) -> None:
    base = exported
    examples = load_dataset("labelled", base / "export", list(CODES))
    assert len(examples) == STUDIES
    manifest = json.loads((base / "export" / "manifest.json").read_text())
    assert manifest["counts"]["feedback"] == STUDIES * len(CODES)
    # The verdicts undo the wrong flags: the labels are the synthetic truth, whose positives are
    # counted in the source labels.csv.
    source = (base / "synth" / "labels.csv").read_text().splitlines()
    header = source[0].split(",")
    for k, code in enumerate(CODES):
        column = header.index(code)
        expected = sum(line.split(",")[column] == "1" for line in source[1:])
        assert sum(e.labels[k] == 1 for e in examples) == expected


@pytest.mark.slow
def test_labels_check_then_train_on_the_export_as_it_is(
    exported: Path,
) -> None:
    base = exported
    check = subprocess.run(
        [sys.executable, "-m", "diagnostics.cli", "labels", "check", "export", "--json"],
        cwd=base,
        capture_output=True,
        text=True,
        check=False,
    )
    assert check.returncode == 0, check.stderr
    report = json.loads(check.stdout)
    assert report["key"] == "study_instance_uid" and report["matched"] == STUDIES
    assert set(report["findings"]) == set(CODES)
    started = time.monotonic()
    train = subprocess.run(
        [
            sys.executable,
            "-m",
            "diagnostics.cli",
            "train",
            "recipe.toml",
            "--quiet",
            "--allow-weak",
        ],
        cwd=base,
        capture_output=True,
        text=True,
        check=False,
    )
    assert train.returncode == 0, train.stderr
    package = load_package(base / "package")
    assert package.finding_codes == CODES
    assert package.manifest.training.train.studies + package.manifest.training.validation.studies
    assert time.monotonic() - started < 600
