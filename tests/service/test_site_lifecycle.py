"""A model's life across two sites, end to end through the CLI and the running service:
site A trains a model on its synthetic studies; site B runs it, its radiologist gives verdicts
through the review UI's form, the feedback is exported and the model calibrated on it; the
calibrated version runs in shadow, is compared on the radiologist's verdicts, promoted, and
rolled back. Nothing here is mocked: `diagnostics train|feedback|calibrate|models` as a user
types them, `diagnostics serve` as a hospital runs it."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.uid import generate_uid

from diagnostics.package import load_package
from diagnostics.store import open_store
from diagnostics.synth import SynthConfig, generate
from tests.helpers.service import Server, start_service, ui_session

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "site-lifecycle-token-0123456789abcdef"
FINDING = "cardiomegaly"
"""One finding a tiny model learns in a few epochs of small images: what is tested here is the
path, not the model."""
SIZE = SynthConfig(rows=128, columns=128, spacing_mm=3.2)
"""The quick recipe's studies (training/quick.toml): big enough for the heart to be learnt."""
RECIPE = f"""
name = "site-a"
version = "0.1.0"
model = "compact"
findings = ["{FINDING}"]
seed = 3
package = "site-a-package"

[data]
train = "site-a"
validation_fraction = 0.25

[preprocessing]
size = [128, 128]

[training]
epochs = 16
batch_size = 8
learning_rate = 0.002
"""
SWAP_S = 90.0
"""How long the service may take to follow a registry change on a loaded 2-core machine."""


def _cli(*args: str | Path, cwd: Path, timeout: float = 900) -> str:
    """`diagnostics ARGS` with this checkout's code; its stdout, after checking it succeeded."""
    done = subprocess.run(
        [sys.executable, "-m", "diagnostics.cli", *map(str, args)],
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, f"diagnostics {args[0]}: {done.stderr[-3000:]}"
    assert "Traceback" not in done.stderr
    return done.stdout


def _review(server: Server, session: requests.Session, uid: str, truth: int) -> None:
    """The radiologist's verdict on the finding through the study page's form: agree when the
    model's flag matches the truth, disagree when it does not."""
    result = server.wait_for_result(uid, timeout=120)
    finding = next(f for f in result["result"]["findings"] if f["code"] == FINDING)  # type: ignore[index]
    page = session.get(f"{server.url}/ui/studies/{uid}", timeout=60)
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf, page.text[:500]
    verdict = "agree" if bool(finding["flagged"]) == bool(truth) else "disagree"
    posted = session.post(
        f"{server.url}/ui/studies/{uid}/feedback",
        data={
            "csrf": csrf[1],
            "version": str(result["version"]),
            "code": FINDING,
            "verdict": verdict,
        },
        timeout=60,
    )
    assert posted.status_code == 200 and "saved=feedback" in posted.url, posted.text[:300]


def _screen(server: Server, data: bytes) -> dict[str, object]:
    response = server.post("/v1/screen", data=data, headers={"Content-Type": "application/dicom"})
    assert response.status_code == 200, response.text
    body = dict(response.json())
    assert body["status"] == "analyzed", body
    return body


def _renamed(path: Path) -> bytes:
    """The same image as a new study, so it is screened afresh, not answered from the store."""
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _version(body: dict[str, object]) -> str:
    model = body["model"]
    assert isinstance(model, dict)
    return str(model["version"])


def _until_serving(server: Server, studies: list[Path], version: str) -> None:
    deadline = time.monotonic() + SWAP_S
    for path in studies * 50:
        if _version(_screen(server, _renamed(path))) == version:
            return
        assert time.monotonic() < deadline, f"the service did not switch to {version}"
        time.sleep(1)


@pytest.mark.slow
def test_train_at_site_a_calibrate_on_site_b_feedback_shadow_promote_roll_back(
    tmp_path: Path,
) -> None:
    # Site A: its studies and a quick training.
    generate(tmp_path / "site-a", 240, 31, SIZE, workers=2)
    (tmp_path / "recipe.toml").write_text(RECIPE)
    _cli("train", "recipe.toml", "--allow-weak", "--quiet", cwd=tmp_path)
    trained = load_package(tmp_path / "site-a-package")
    assert trained.manifest.version == "0.1.0"

    # Site B runs it; its radiologist reviews 60 studies in the review UI.
    truths = generate(tmp_path / "site-b", 72, 97, SIZE, workers=2)
    labels = {row["study_instance_uid"]: int(row[FINDING]) for row in _rows(tmp_path / "site-b")}
    files = sorted((tmp_path / "site-b").glob("study-*/*.dcm"))
    assert len(files) == len(truths)
    reviewed, later = files[:60], files[60:]
    flags = ("--workers", "1", "--model", str(tmp_path / "site-a-package"))
    (tmp_path / "b").mkdir()
    server = start_service(
        tmp_path / "b", *flags, token=TOKEN, env={"DIAGNOSTICS_STABLE_SECONDS": "0.5"}
    )
    storage = server.storage
    try:
        session = ui_session(server, TOKEN)
        for path in reviewed:
            body = _screen(server, path.read_bytes())
            assert _version(body) == "0.1.0"
            uid = str(body["study_instance_uid"])
            _review(server, session, uid, labels[uid])

        # Feedback export, then calibration on it: a new version recording the site.
        _cli(
            "feedback", "export", "--storage", storage, "--out", tmp_path / "feedback", cwd=tmp_path
        )
        exported = {
            row["study_instance_uid"]: int(row[FINDING]) for row in _rows(tmp_path / "feedback")
        }
        assert exported == {uid: labels[uid] for uid in exported} and len(exported) == 60
        _cli(
            "calibrate",
            "--model",
            tmp_path / "site-a-package",
            "--data",
            tmp_path / "feedback",
            "--target-sensitivity",
            "0.8",
            "--site",
            "b",
            "--min-positives",
            "5",
            "--min-negatives",
            "5",
            "--out",
            tmp_path / "site-b-package",
            cwd=tmp_path,
        )
        calibrated = load_package(tmp_path / "site-b-package").manifest
        assert calibrated.version == "0.1.0+site.b"

        # Installed, run in shadow on new studies, compared on the radiologist's verdicts.
        _cli("models", "install", tmp_path / "site-b-package", "--storage", storage, cwd=tmp_path)
        _cli("models", "shadow", "0.1.0+site.b", "--storage", storage, cwd=tmp_path)
        shadowed = 0
        for path in later:
            body = _screen(server, path.read_bytes())
            assert _version(body) == "0.1.0"  # the study's result is the active model's
            uid = str(body["study_instance_uid"])
            _review(server, session, uid, labels[uid])
            shadowed += 1
        compare = json.loads(
            _cli("models", "compare", "--storage", storage, "--json", cwd=tmp_path)
        )
        assert compare["active"].endswith("0.1.0") and compare["shadow"].endswith("0.1.0+site.b")
        assert compare["shadow_studies"] >= 1 and compare["feedback_studies"] >= shadowed
        (finding,) = compare["findings"]
        assert finding["code"] == FINDING

        # Promoted (its operating points were derived on site B's studies), then rolled back.
        _cli("models", "promote", "--storage", storage, cwd=tmp_path)
        _until_serving(server, later, "0.1.0+site.b")
        _cli("models", "rollback", "--storage", storage, cwd=tmp_path)
        _until_serving(server, later, "0.1.0")
        listed = _cli("models", "list", "--storage", storage, cwd=tmp_path)
        assert "0.1.0+site.b" in listed
        store = open_store(storage)
        try:  # who did what is in the audit trail
            for event in (
                "model_installed",
                "model_shadowed",
                "model_promoted",
                "model_rolled_back",
            ):
                assert store.audit_entries(event), f"{event} is not audited"
        finally:
            store.close()
    finally:
        server.stop()


def _rows(folder: Path) -> list[dict[str, str]]:
    with (folder / "labels.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))
