"""kill -9 during a 200-instance burst, then restart: nothing acknowledged is lost, every study
is screened exactly once, and every result reaches the PACS (Orthanc)."""

from __future__ import annotations

import re
import sqlite3
import subprocess
from pathlib import Path

import pydicom
import pytest

from tests.helpers.pacs import Orthanc
from tests.helpers.service import Server, start_service
from tests.helpers.synth import SynthFactory
from tests.helpers.wait import free_port, wait_for

BURST = 200


def _db(storage: Path) -> sqlite3.Connection:
    return sqlite3.connect(storage / "intake.sqlite3", timeout=30)


@pytest.fixture(scope="module")
def burst(synth_factory: SynthFactory) -> list[Path]:
    return synth_factory("burst", BURST, 6262, 256, workers=2, compressed_fraction=0.0).files


@pytest.mark.slow
def test_kill_9_during_a_burst_loses_nothing(
    orthanc: Orthanc, burst: list[Path], tmp_path: Path
) -> None:
    storage = tmp_path / "storage"
    http_port, dicom_port = free_port(), free_port()
    flags = ["--allow-ae", "STORESCU", "--results-to", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"]
    flags += ["--stable-seconds", "0.5"]

    def serve() -> Server:
        return start_service(tmp_path, *flags, port=http_port, dicom_port=dicom_port)

    service = serve()
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
        service.kill()
    output, _ = sender.communicate(timeout=60)
    acked = _acknowledged(output)
    # Stored rows can run one ahead of the acknowledgements (the kill lands between the commit
    # and the C-STORE response), so the burst's progress is judged by what was acknowledged.
    assert BURST // 8 - 2 <= len(acked) < BURST, "the kill must land inside the burst"

    stored = {row[0] for row in _db(storage).execute("SELECT sop_instance_uid FROM instances")}
    assert acked <= stored, "an acknowledged instance was lost"

    service = serve()
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
        service.stop()  # graceful: `diagnostics serve` forwards SIGTERM; nothing outlives it
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
