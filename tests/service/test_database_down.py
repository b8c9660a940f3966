"""What a node does while its PostgreSQL is down: intake refuses with a retryable failure (C-STORE
Out of Resources 0xA700, STOW-RS 503 with Retry-After), stores nothing, never crashes, and
takes instances again once the database is back. A real cluster of its own, stopped and
started with pg_ctl; DCMTK storescu as the modality."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pydicom
import pytest

from diagnostics.api.app import create_app
from diagnostics.service.runtime import Runtime
from diagnostics.service.settings import ServiceSettings
from tests.helpers.asgi import asgi_request
from tests.helpers.pacs import storescu
from tests.helpers.postgres import Cluster, pg_ctl, start_postgres
from tests.helpers.synth import SynthStudies
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.slow


def _stow(runtime: Runtime, data: bytes) -> tuple[int, dict[str, str]]:
    boundary = uuid.uuid4().hex
    body = f"\r\n--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
    body += f"\r\n--{boundary}--\r\n".encode()
    kind = f'multipart/related; type="application/dicom"; boundary={boundary}'
    response = asgi_request(
        create_app(lambda: runtime, lambda: None),
        "POST",
        "/dicomweb/studies",
        headers={"Content-Type": kind},
        content=body,
    )
    return response.status_code, dict(response.headers)


def _verbose_store(port: int, path: Path) -> subprocess.CompletedProcess[str]:
    command = ["storescu", "-v", "-aet", "STORESCU", "-aec", "DIAGNOSTICS"]
    return subprocess.run(
        [*command, "127.0.0.1", str(port), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _copy(source: Path, target: Path) -> Path:
    ds = pydicom.dcmread(source)
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(target)
    return target


def test_intake_refuses_retryably_while_the_database_is_down_and_resumes(
    tmp_path: Path, synth_studies: SynthStudies
) -> None:
    folder, truths = synth_studies
    explicit = [
        folder / t.file
        for t in truths
        if pydicom.dcmread(folder / t.file, stop_before_pixels=True).file_meta.TransferSyntaxUID
        == pydicom.uid.ExplicitVRLittleEndian
    ]
    assert explicit, "a synthetic study in Explicit VR Little Endian"
    down_file = _copy(explicit[0], tmp_path / "down.dcm")
    back_file = _copy(explicit[0], tmp_path / "back.dcm")
    with start_postgres() as cluster:
        config = ServiceSettings(
            storage=tmp_path / "storage",
            database_url=cluster.new_database(),
            dicom_port=0,
            allow_ae=("STORESCU",),
            stable_seconds=3600,  # nothing is screened: only intake is under test
            insecure_dev=True,
        )
        runtime = Runtime(config)
        runtime.start()
        try:
            assert runtime.listener is not None
            port = runtime.listener.port
            _stop(cluster)
            sent = _verbose_store(port, down_file)
            assert sent.returncode != 0
            assert "Refused: OutOfResources" in sent.stderr, sent.stderr
            status, headers = _stow(runtime, down_file.read_bytes())
            assert status == 503 and headers.get("retry-after"), (status, headers)
            read = asgi_request(
                create_app(lambda: runtime, lambda: None), "GET", f"/v1/studies/{_uid(down_file)}"
            )
            assert read.status_code == 503 and read.json()["error"] == "StoreError", read.text
            assert list((tmp_path / "storage" / "instances").iterdir()) == []
            assert list((tmp_path / "storage" / "incoming").iterdir()) == []

            _start(cluster)  # the pool reconnects: no restart of the node
            # The pool's next attempt reconnects (seconds when idle, not its 5-minute default);
            # generous for a CI machine whose two cores run the rest of the suite meanwhile.
            wait_for(
                lambda: storescu(port, [back_file]).returncode == 0, 180, "C-STORE again", poll=2.0
            )
            status, _ = _stow(runtime, down_file.read_bytes())
            assert status == 200
            for path in (down_file, back_file):
                state = runtime.store.study_state(_uid(path))
                assert state is not None and state["instance_count"] == 1
        finally:
            runtime.stop()
            runtime.store.close()


def _uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def _stop(cluster: Cluster) -> None:
    pg_ctl(cluster, "-m", "immediate", "stop")


def _start(cluster: Cluster) -> None:
    pg_ctl(cluster, "-w", "-t", "60", "start")
