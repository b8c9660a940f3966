"""The real service with a pre-filled worklist, and headless Chromium (Debian's package, driven
by Playwright; `playwright install` is never needed)."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, generate_uid

from diagnostics.synth import SynthConfig, generate
from tests.serving.conftest import FIELD_OF_VIEW_MM, Server, _stop, _wait_ready, free_port

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "ui-test-token-0123456789abcdef"


@dataclass
class Prefilled:
    server: Server
    analysed: list[str]
    """Study UIDs screened and analysed, flagged ones first."""
    flagged: list[str]
    not_analysed: str
    failed: str


def _variant(path: Path, **changes: object) -> bytes:
    """A copy of a synthetic study under new UIDs, with header changes."""
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for key, value in changes.items():
        setattr(ds, key, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _broken(path: Path) -> bytes:
    """In scope and stored, but its JPEG 2000 codestream is cut off: screening fails."""
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 200])
    ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="package")
def prefilled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prefilled]:
    root = tmp_path_factory.mktemp("ui")
    synth = root / "synth"
    config = SynthConfig(rows=384, columns=384, spacing_mm=FIELD_OF_VIEW_MM / 384)
    generate(synth, 6, 3, config)
    files = sorted(synth.glob("study-*/*.dcm"))
    storage = root / "storage"
    port = free_port()
    env = {
        **os.environ,
        "DIAGNOSTICS_API_TOKEN": TOKEN,
        "DIAGNOSTICS_STABLE_SECONDS": "0.5",
        "BENTOML_HOME": str(root / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "True",
    }
    for name in (
        "DIAGNOSTICS_API_TOKEN_FILE",
        "DIAGNOSTICS_INSECURE_DEV",
        "DIAGNOSTICS_ALLOW_AE",
        "DIAGNOSTICS_ESCALATE_AFTER_MINUTES",
    ):
        env.pop(name, None)
    command = [sys.executable, "-m", "diagnostics.cli", "serve", "--port", str(port)]
    command += ["--dicom-port", "0", "--storage", str(storage), "--workers", "1"]
    log = root / "server.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", storage, log, process)
    try:
        _wait_ready(server)
        flagged, routine = [], []
        for path in files:
            result = _screen(server, path.read_bytes())
            assert result["status"] == "analyzed", result
            (flagged if result["priority"] == "urgent" else routine).append(
                str(result["study_instance_uid"])
            )
        assert flagged and routine, "the synthetic set needs flagged and unflagged studies"
        ct = _screen(server, _variant(files[0], Modality="CT"))
        failed = _screen(server, _broken(files[1]))
        assert ct["status"] == "not_analyzed" and failed["status"] == "failed"
        yield Prefilled(
            server,
            flagged + routine,
            flagged,
            str(ct["study_instance_uid"]),
            str(failed["study_instance_uid"]),
        )
    finally:
        _stop(process)


def _screen(server: Server, data: bytes) -> dict[str, object]:
    response = requests.post(
        server.url + "/v1/screen",
        data=data,
        headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/dicom"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: scripts/setup installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()
