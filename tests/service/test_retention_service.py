"""The running service's retention job and its free-disk watermark, with the real parts:
`diagnostics serve`, HTTP, DCMTK storescu."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pydicom
import pytest
import requests

from diagnostics.store.sqlite import SqliteStore
from tests.helpers.pacs import _STORESCU_OPTION, storescu
from tests.helpers.service import Server, start_service
from tests.helpers.synth import SynthStudies
from tests.helpers.wait import free_port, wait_for

pytestmark = pytest.mark.slow

DICOM = {"Content-Type": "application/dicom"}


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _storescu_verbose(port: int, path: Path) -> subprocess.CompletedProcess[str]:
    """storescu -v, which prints the status of each store response (0xA700: OutOfResources)."""
    syntax = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
    option = _STORESCU_OPTION.get(syntax, "-x=")
    command = ["storescu", "-v", "-aet", "STORESCU", "-aec", "DIAGNOSTICS", option, "-R"]
    return subprocess.run(
        [*command, "127.0.0.1", str(port), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _stow(server: Server, data: bytes) -> tuple[int, dict[str, object]]:
    boundary = "b0undary"
    body = f"\r\n--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
    body += f"\r\n--{boundary}--\r\n".encode()
    kind = f'multipart/related; type="application/dicom"; boundary={boundary}'
    response = server.post("/dicomweb/studies", data=body, headers={"Content-Type": kind})
    return response.status_code, response.json()


def test_the_service_purges_old_images_and_screens_a_resent_study_again(
    tmp_path: Path, synth_studies: SynthStudies
) -> None:
    folder, truths = synth_studies
    study = truths[0].study_instance_uid
    data = (folder / truths[0].file).read_bytes()
    # A window of about two seconds, so the service's own job purges while we watch.
    fast = {"_DIAGNOSTICS_TEST_MIN_PURGE_EVERY_S": "1"}  # the job's floor is a minute
    flags = ("--retain-days", "0.00002", "--stable-seconds", "0.5")
    server = start_service(tmp_path, *flags, env=fast)
    try:
        first = server.post("/v1/screen", data=data, headers=DICOM)
        assert first.status_code == 200, first.text
        assert first.json()["status"] == "analyzed"

        def purged() -> dict[str, object] | None:
            reply = server.get(f"/v1/studies/{study}")
            body: dict[str, object] = reply.json()
            return body if reply.status_code == 200 and body["images_purged"] else None

        state = wait_for(purged, 60, "the study's images to be purged")
        assert state["version"] == 1 and state["result"]["status"] == "analyzed"  # type: ignore[index]
        assert _files(server.storage / "instances") == []
        assert _files(server.storage / "results") == []
        worklist = server.get("/v1/worklist").json()
        assert study in {item["study_instance_uid"] for item in worklist["items"]}

        again = server.post("/v1/screen", data=data, headers=DICOM)
        assert again.status_code == 200, again.text
        assert again.json()["status"] == "analyzed"
        latest = server.get(f"/v1/studies/{study}").json()
        assert latest["version"] == 2
        assert latest["images_purged"] is True  # the purge stays visible after the resend
        assert "covers the 1 instance" in latest["images_note"]
    finally:
        server.stop()
    entries = SqliteStore(server.storage).audit_entries("images_purged")
    assert entries and entries[0]["actor"] == "retention"
    assert entries[0]["detail"]["studies"] == [study]  # type: ignore[index]


def test_under_the_free_disk_floor_intake_is_refused_before_anything_is_written(
    tmp_path: Path, synth_studies: SynthStudies
) -> None:
    folder, truths = synth_studies
    path = folder / truths[1].file
    data = path.read_bytes()
    dicom_port = free_port()
    flags = ("--allow-ae", "STORESCU", "--stable-seconds", "0.5")
    server = start_service(tmp_path, *flags, "--min-free-disk", "1000TiB", dicom_port=dicom_port)
    try:
        sent = _storescu_verbose(dicom_port, path)
        assert sent.returncode != 0
        assert "Received Store Response (Refused: OutOfResources)" in sent.stderr, sent.stderr

        screen = server.post("/v1/screen", data=data, headers=DICOM)
        assert screen.status_code == 507, screen.text
        assert screen.json()["error"] == "DiskFullError"
        assert "--min-free-disk" in screen.json()["message"]
        status, body = _stow(server, data)
        assert status == 507 and body["error"] == "DiskFullError"

        assert _files(server.storage / "instances") == []
        assert _files(server.storage / "incoming") == []
        assert server.get("/v1/worklist").json()["total"] == 0
        metrics = server.get("/metrics").text
        assert "diagnostics_intake_refused 1.0" in metrics
        assert "diagnostics_storage_min_free_bytes" in metrics
        health = requests.get(server.url + "/healthz", timeout=30)  # no token needed
        assert health.status_code == 200 and health.json()["intake"] == "refused"
        assert "--min-free-disk" in health.json()["message"]
    finally:
        server.stop()
    assert "refusing new instances" in server.log.read_text()

    # Lowered (a restart): accepted again.
    server = start_service(tmp_path, *flags, "--min-free-disk", "1MiB", dicom_port=dicom_port)
    try:
        assert "diagnostics_intake_refused 0.0" in server.get("/metrics").text
        assert requests.get(server.url + "/healthz", timeout=30).json()["intake"] == "accepting"
        sent = storescu(dicom_port, [path])
        assert sent.returncode == 0, sent.stderr
        assert "a700" not in (sent.stdout + sent.stderr).lower()
        result = server.wait_for_result(truths[1].study_instance_uid, timeout=60)
        assert result["version"] == 1
        assert len(_files(server.storage / "instances")) == 1
        start = time.monotonic()
        status, body = _stow(server, (folder / truths[2].file).read_bytes())
        assert status == 200, body
        assert time.monotonic() - start < 60
    finally:
        server.stop()
