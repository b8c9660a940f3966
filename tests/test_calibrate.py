"""Site calibration (`diagnostics calibrate`): the bundled package re-derived on a small labelled
synthetic "site", through the CLI.

What these show: the new package loads (verified), its thresholds reach the target sensitivity on
the site's own studies as serving computes probabilities, the manifest and card record the site,
counts and Wilson intervals, unknown labels are skipped and counted, an unlabelled finding keeps
its calibration, screening with the new package works, and the old package is untouched. Refusals:
too few positives (naming the finding), inverted labels. What they do not show: that the
thresholds generalise beyond the calibration studies (they are chosen on them).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pytest

from diagnostics.calibrate import site_version, wilson_interval
from diagnostics.compare import model_logits
from diagnostics.datasets.labelled import LABELS_FILE, load_labelled_folder
from diagnostics.errors import ModelPackageError
from diagnostics.package import Manifest, ModelPackage, load_package
from diagnostics.package.manifest import SiteFindingResult
from tests.helpers.cli import assert_refused, run_cli
from tests.helpers.synth import BUNDLED, SynthFactory

SEED = 1616
STUDIES = 32
TARGET = 0.9
UNKNOWN_NODULES = 2
"""Nodule labels rewritten as unknown (-1 and empty) in the site's labels.csv."""


class Site(NamedTuple):
    folder: Path
    cache: Path


def _fingerprint(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


@pytest.fixture(scope="module")
def site(synth_factory: SynthFactory, tmp_path_factory: pytest.TempPathFactory) -> Site:
    """A labelled "site" folder without a cardiomegaly column, two nodule labels unknown."""
    made = synth_factory(
        "calibrate-site",
        STUDIES,
        SEED,
        256,
        nodule_prevalence=0.5,
        consolidation_prevalence=0.5,
    )
    path = made.folder / LABELS_FILE
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[0]["nodule"], rows[1]["nodule"] = "-1", ""
    columns = [c for c in rows[0] if c != "cardiomegaly"]
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return Site(made.folder, tmp_path_factory.mktemp("calibrate-cache"))


@pytest.fixture(scope="module")
def calibrated(site: Site, tmp_path_factory: pytest.TempPathFactory) -> ModelPackage:
    before = _fingerprint(BUNDLED)
    out = tmp_path_factory.mktemp("calibrated") / "cxr-demo-site"
    result = run_cli(
        "calibrate", "--model", BUNDLED, "--data", site.folder, "--out", out,
        "--target-sensitivity", str(TARGET), "--site", "St Mary's", "--min-positives", "5",
        "--min-negatives", "5", "--threads", "2", "--cache", site.cache,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "nodule" in result.stdout and "cardiomegaly" in result.stdout
    assert _fingerprint(BUNDLED) == before, "the calibrated package must not change"
    return load_package(out)


def test_the_new_package_records_the_site(calibrated: ModelPackage, bundled: ModelPackage) -> None:
    m = calibrated.manifest
    site = m.site_calibration
    assert site is not None
    assert (
        m.version == "1.0.0+site.St-Mary-s" == site_version(bundled.manifest.version, "St Mary's")
    )
    assert m.sha256 == bundled.manifest.sha256, "the graph is copied unchanged"
    assert (site.site, site.studies, site.target_sensitivity) == ("St Mary's", STUDIES, TARGET)
    assert site.previous_version == "1.0.0" and site.ci_method == "wilson"
    assert sorted(site.findings) == ["consolidation", "nodule"]
    assert site.kept == ["cardiomegaly"]
    assert site.findings["nodule"].unknown == UNKNOWN_NODULES
    nodule = site.findings["nodule"]
    assert nodule.positives + nodule.negatives == STUDIES - UNKNOWN_NODULES
    for result in site.findings.values():
        assert result.sensitivity_ci_95[0] <= result.sensitivity <= result.sensitivity_ci_95[1]
        assert result.sensitivity_ci_95[1] - result.sensitivity_ci_95[0] > 0.05
    # the unlabelled finding keeps what it had; the others were refitted here
    assert m.calibration["cardiomegaly"] == bundled.manifest.calibration["cardiomegaly"]
    assert m.operating_points["cardiomegaly"] == bundled.manifest.operating_points["cardiomegaly"]
    for code in site.findings:
        assert m.calibration[code].fitted_on.startswith("site St Mary's")
        assert m.operating_points[code].threshold == site.findings[code].threshold
    card = (calibrated.path / "MODEL_CARD.md").read_text()
    assert "## Site calibration" in card and "St Mary's" in card
    assert "previous calibration kept: `cardiomegaly`" in card
    reference = m.reference_distributions  # drift monitoring's: every site study, new calibration
    assert reference is not None and reference.data.startswith("site St Mary's")
    assert all(sum(c) == STUDIES for c in reference.findings.values())
    assert reference.appearance is not None and sum(reference.appearance) == STUDIES
    assert "## Reference distributions" in card


def test_thresholds_reach_the_target_on_the_site(calibrated: ModelPackage, site: Site) -> None:
    codes = list(calibrated.manifest.site_calibration.findings)  # type: ignore[union-attr]
    examples = load_labelled_folder(site.folder, codes, allow_unknown=True)
    logits = model_logits(calibrated, examples, threads=2, cache_dir=site.cache)
    labels = np.array([e.labels for e in examples])
    for k, code in enumerate(codes):
        known = labels[:, k] >= 0
        y = labels[known, k].astype(bool)
        column = logits[known, calibrated.finding_codes.index(code)]
        probs = calibrated.manifest.calibration[code].probability(column)
        flagged = probs >= calibrated.manifest.operating_points[code].threshold
        recorded = calibrated.manifest.site_calibration.findings[code]  # type: ignore[union-attr]
        assert flagged[y].mean() >= TARGET, code
        assert flagged[y].mean() == recorded.sensitivity
        assert (~flagged[~y]).mean() == recorded.specificity


def test_screening_with_the_new_package(
    calibrated: ModelPackage, site: Site, tmp_path: Path
) -> None:
    study = sorted(site.folder.glob("study-*/*.dcm"))[0]
    out = tmp_path / "results"
    result = run_cli("screen", study, "--out", out, "--model", calibrated.path, "--no-dicom")
    assert result.returncode == 0, result.stderr
    (line,) = (out / "results.jsonl").read_text().splitlines()
    screened = json.loads(line)
    assert screened["status"] == "analyzed"
    assert screened["model"]["version"] == "1.0.0+site.St-Mary-s"
    points = calibrated.manifest.operating_points
    assert {f["code"]: f["threshold"] for f in screened["findings"]} == {
        code: point.threshold for code, point in points.items()
    }


def test_too_few_positives_is_refused_naming_the_finding(site: Site, tmp_path: Path) -> None:
    out = tmp_path / "refused"
    result = run_cli(
        "calibrate", "--model", BUNDLED, "--data", site.folder, "--out", out,
        "--target-sensitivity", "0.9", "--site", "x", "--min-positives", str(STUDIES),
    )  # fmt: skip
    message = assert_refused(result, "DatasetError")
    assert "finding 'nodule'" in message and "finding 'consolidation'" in message
    assert not out.exists()


def test_an_existing_destination_is_refused_before_screening(
    calibrated: ModelPackage, site: Site
) -> None:
    before = _fingerprint(calibrated.path)
    result = run_cli(
        "calibrate", "--model", BUNDLED, "--data", site.folder, "--out", calibrated.path,
        "--target-sensitivity", "0.9", "--site", "x",
    )  # fmt: skip
    assert "already exists" in assert_refused(result, "ModelPackageError")
    assert _fingerprint(calibrated.path) == before


def test_inverted_labels_are_refused(site: Site, tmp_path: Path) -> None:
    flipped = tmp_path / "flipped"
    shutil.copytree(site.folder, flipped)
    path = site.folder / LABELS_FILE
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        row["consolidation"] = {"0": "1", "1": "0"}[row["consolidation"]]
    with (flipped / LABELS_FILE).open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    result = run_cli(
        "calibrate", "--model", BUNDLED, "--data", flipped, "--out", tmp_path / "out",
        "--target-sensitivity", "0.9", "--site", "x", "--min-positives", "5",
        "--min-negatives", "5", "--cache", site.cache,
    )  # fmt: skip
    message = assert_refused(result, "DatasetError")
    assert "finding 'consolidation'" in message and "invert" in message
    assert not (tmp_path / "out").exists()


def test_wilson_interval() -> None:
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 10)[0] == 0.0
    with pytest.raises(ValueError):
        wilson_interval(3, 0)


def test_site_calibration_block_is_strict(calibrated: ModelPackage) -> None:
    data = json.loads(calibrated.manifest.to_json())
    with pytest.raises(ValueError, match="must contain sensitivity"):
        SiteFindingResult(
            positives=5,
            negatives=5,
            unknown=0,
            threshold=0.5,
            sensitivity=0.9,
            sensitivity_ci_95=(0.1, 0.5),
            specificity=0.5,
            specificity_ci_95=(0.2, 0.8),
        )
    bad = json.loads(json.dumps(data))
    bad["site_calibration"]["findings"]["effusion"] = bad["site_calibration"]["findings"]["nodule"]
    with pytest.raises(ModelPackageError, match="site_calibration"):
        Manifest.from_json(json.dumps(bad))
    bad = json.loads(json.dumps(data))
    bad["site_calibration"]["kept"] = []
    with pytest.raises(ModelPackageError, match="no site calibration for finding 'cardiomegaly'"):
        Manifest.from_json(json.dumps(bad))
    bad = json.loads(json.dumps(data))
    bad["site_calibration"]["date"] = "3 Dec 2026"
    with pytest.raises(ModelPackageError, match="ISO 8601 date"):
        Manifest.from_json(json.dumps(bad))
