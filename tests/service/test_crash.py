"""kill -9 during a 200-instance burst, then restart: nothing acknowledged is lost, every study
is screened exactly once, and every result reaches the PACS (Orthanc)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import psutil
import pydicom
import pytest

from diagnostics.synth import SynthConfig, generate
from tests.service.conftest import Orthanc, free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
BURST = 200


def _serve(
    storage: Path, http_port: int, dicom_port: int, orthanc: Orthanc, log: Path
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-m",
        "diagnostics.cli",
        "serve",
        "--port",
        str(http_port),
        "--dicom-port",
        str(dicom_port),
        "--storage",
        str(storage),
        "--allow-ae",
        "STORESCU",
        "--results-to",
        f"ORTHANC@127.0.0.1:{orthanc.dicom_port}",
        "--stable-seconds",
        "0.5",
        "--insecure-dev",
    ]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("DIAGNOSTICS_API_TOKEN", None)
    handle = log.open("ab")
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    wait_for(
        lambda: _ready(http_port) or process.poll() is not None, 120, "the service to be ready"
    )
    assert process.poll() is None, log.read_text()[-3000:]
    return process


def _kill_tree(pid: int) -> None:
    """kill -9 the service and every process under it, as an OOM kill of its container would."""
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _db(storage: Path) -> sqlite3.Connection:
    return sqlite3.connect(storage / "intake.sqlite3", timeout=30)


@pytest.fixture(scope="module")
def burst(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("burst")
    config = SynthConfig(rows=256, columns=256, spacing_mm=409.6 / 256, compressed_fraction=0.0)
    truths = generate(out, BURST, 6262, config, workers=2)
    return [out / t.file for t in truths]


@pytest.mark.slow
def test_kill_9_during_a_burst_loses_nothing(
    orthanc: Orthanc, burst: list[Path], tmp_path: Path
) -> None:
    storage = tmp_path / "storage"
    log = tmp_path / "service.log"
    http_port, dicom_port = free_port(), free_port()
    service = _serve(storage, http_port, dicom_port, orthanc, log)
    sender = subprocess.Popen(
        [
            "storescu",
            "-v",
            "-aet",
            "STORESCU",
            "-aec",
            "DIAGNOSTICS",
            "127.0.0.1",
            str(dicom_port),
            *map(str, burst),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(
            lambda: (
                _db(storage).execute("SELECT COUNT(*) FROM instances").fetchone()[0] >= BURST // 8
            ),
            120,
            "the burst to start arriving",
            poll=0.01,
        )
    finally:
        _kill_tree(service.pid)
        service.wait(10)
    output, _ = sender.communicate(timeout=60)
    acked = _acknowledged(output)
    # Stored rows can run one ahead of the acknowledgements (the kill lands between the commit
    # and the C-STORE response), so the burst's progress is judged by what was acknowledged.
    assert BURST // 8 - 2 <= len(acked) < BURST, "the kill must land inside the burst"

    stored = {row[0] for row in _db(storage).execute("SELECT sop_instance_uid FROM instances")}
    assert acked <= stored, "an acknowledged instance was lost"

    service = _serve(storage, http_port, dicom_port, orthanc, log)
    try:
        studies = {row[0] for row in _db(storage).execute("SELECT study_instance_uid FROM studies")}
        wait_for(
            lambda: _all_done(storage, len(studies)),
            300,
            "every stored study to be screened and sent",
        )
        db = _db(storage)
        versions = db.execute(
            "SELECT study_instance_uid, COUNT(*) FROM results GROUP BY study_instance_uid"
        ).fetchall()
        assert len(versions) == len(studies) and all(n == 1 for _, n in versions), (
            "screened exactly once"
        )
    finally:
        children = psutil.Process(service.pid).children(recursive=True)
        os.kill(service.pid, signal.SIGTERM)  # graceful: `diagnostics serve` forwards it
        try:
            service.wait(60)
        finally:
            for child in children:  # nothing may outlive the test, whatever happened
                with contextlib.suppress(psutil.NoSuchProcess):
                    child.kill()
    # Every study's SR is in Orthanc, in the right study.
    series = orthanc.post("/tools/find", {"Level": "Series", "Query": {"Modality": "SR"}})
    sr_studies = {
        orthanc.get(f"/series/{s}/study")["MainDicomTags"]["StudyInstanceUID"] for s in series
    }
    assert studies <= sr_studies


def _acknowledged(storescu_output: str) -> set[str]:
    """SOP Instance UIDs storescu saw a success status for."""
    acked: set[str] = set()
    current: str | None = None
    for line in storescu_output.splitlines():
        sending = re.search(r"Sending file: (\S+)", line)
        if sending:
            current = sending.group(1)
        elif "Received Store Response (Success)" in line and current is not None:
            acked.add(str(pydicom.dcmread(current, stop_before_pixels=True).SOPInstanceUID))
            current = None
    return acked


def _all_done(storage: Path, studies: int) -> bool:
    db = _db(storage)
    done = db.execute("SELECT COUNT(*) FROM studies WHERE state = 'done'").fetchone()[0]
    pending = db.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'").fetchone()[0]
    return bool(done == studies and pending == 0)
