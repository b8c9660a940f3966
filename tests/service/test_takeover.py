"""The real service in a subprocess: SIGTERM ends it in seconds even with a request waiting on a
screening, and a study whose screener was killed (`kill -9`) is taken over within the lease and
ends with exactly one result."""

from __future__ import annotations

import contextlib
import io
import signal
import threading
import time
from pathlib import Path

import psutil
import pydicom
import pytest
import requests

from diagnostics.store.sqlite import SqliteStore
from tests.helpers.service import Server, start_service
from tests.helpers.synth import SynthFactory
from tests.helpers.wait import free_port, wait_for

LEASE_S = 3.0
STABLE_S = 0.5
IMAGES = 8
"""Images in the study under test: enough that screening it takes a while to interrupt."""


@pytest.fixture(scope="module")
def study(synth_factory: SynthFactory) -> list[bytes]:
    """One study of several images (copies of one synthetic radiograph under new UIDs)."""
    (path,) = synth_factory("takeover", 1, 77, 512).files
    ds = pydicom.dcmread(path)
    images = []
    for _ in range(IMAGES):
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        buffer = io.BytesIO()
        ds.save_as(buffer)
        images.append(buffer.getvalue())
    return images


def _multipart(parts: list[bytes]) -> tuple[str, bytes]:
    body = b"".join(
        b"--b\r\nContent-Type: application/dicom\r\n\r\n" + part + b"\r\n" for part in parts
    )
    return "multipart/related; type=application/dicom; boundary=b", body + b"--b--\r\n"


def _serve(root: Path, port: int) -> Server:
    flags = ("--stable-seconds", str(STABLE_S))
    return start_service(root, *flags, port=port, env={"DIAGNOSTICS_LEASE_SECONDS": str(LEASE_S)})


def _post(port: int, parts: list[bytes], answers: list[requests.Response]) -> threading.Thread:
    content_type, body = _multipart(parts)

    def call() -> None:
        with contextlib.suppress(requests.ConnectionError):  # the service was killed
            answers.append(
                requests.post(
                    f"http://127.0.0.1:{port}/v1/screen",
                    data=body,
                    headers={"Content-Type": content_type},
                    timeout=120,
                )
            )

    thread = threading.Thread(target=call)
    thread.start()
    return thread


def _another_study(data: bytes) -> bytes:
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer)
    return buffer.getvalue()


def _study_uid(data: bytes) -> str:
    return str(pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True).StudyInstanceUID)


@pytest.mark.slow
def test_sigterm_ends_the_service_in_seconds_while_requests_wait(
    tmp_path: Path, study: list[bytes]
) -> None:
    port = free_port()
    server = _serve(tmp_path, port)
    service, log = server.process, server.log
    store = SqliteStore(server.storage, lease_s=600)
    other = _another_study(study[0])
    held = store.receive(other, "test").study_instance_uid
    claim = store.claim_study(held)  # another process is screening it, for a long time
    assert claim is not None
    screening = _study_uid(study[0])
    children = psutil.Process(service.pid).children(recursive=True)
    answers: list[requests.Response] = []
    try:
        waiting = [_post(port, [other], answers), _post(port, study, answers)]
        wait_for(
            lambda: (store.study_state(screening) or {}).get("state") == "screening",
            60,
            "the service to be screening a study",
            poll=0.005,
        )
        started = time.monotonic()
        service.send_signal(signal.SIGTERM)
        service.wait(60)
        took = time.monotonic() - started
        for thread in waiting:
            thread.join(10)
    finally:
        for process in [service, *children]:  # nothing may outlive the test
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                process.kill()
    print(f"SIGTERM to exit: {took:.1f} s")
    # A few seconds (it took minutes when waiting requests held the server up).
    assert took < 15, log.read_text()[-3000:]
    assert sorted(a.status_code for a in answers) == [202, 202], [a.text for a in answers]
    assert {a.headers["Location"] for a in answers} == {
        f"/v1/studies/{held}",
        f"/v1/studies/{screening}",
    }
    state = store.study_state(held)
    assert state is not None and state["claimed_at"] == claim.claimed_at  # not taken from us
    # What the service was screening was given back, not counted as a try (or it finished).
    state = store.study_state(screening)
    assert state is not None and state["state"] in ("waiting", "done"), state
    assert state["tries"] == 0 and store.counts()["studies_screening"] == 1  # ours only


@pytest.mark.slow
def test_a_killed_screening_is_taken_over_within_the_lease(
    tmp_path: Path, study: list[bytes]
) -> None:
    port = free_port()
    service = _serve(tmp_path, port)
    store = SqliteStore(service.storage, lease_s=LEASE_S)
    uid = _study_uid(study[0])
    answers: list[requests.Response] = []
    try:
        _post(port, study, answers)
        wait_for(
            lambda: (store.study_state(uid) or {}).get("state") == "screening",
            60,
            "the study to be screened",
            poll=0.005,
        )
    finally:
        service.kill()  # kill -9 mid-screening
    killed = time.monotonic()
    state = store.study_state(uid)
    assert state is not None and state["state"] == "screening", "the kill must land mid-screening"
    assert store.latest_result(uid) is None

    # Another process takes the claim over once the dead one's lease runs out.
    taken = wait_for(lambda: store.claim_due(stable_s=STABLE_S), 60, "a takeover", poll=0.1)
    took = time.monotonic() - killed
    print(f"kill -9 to takeover: {took:.1f} s")
    assert took <= LEASE_S + STABLE_S + 2.0
    (claim,) = taken
    assert claim.study_instance_uid == uid and claim.tries == 2 and len(claim.paths) == IMAGES
    store.release(claim)  # ...which hands it to the restarted service

    service = _serve(tmp_path, port)
    try:
        wait_for(lambda: store.latest_result(uid), 120, "the result")
        time.sleep(2 * STABLE_S)  # time for a second result, if there were to be one
    finally:
        service.stop()
    count = store.connection().execute(
        "SELECT COUNT(*) FROM results WHERE study_instance_uid = ?", (uid,)
    )
    assert count.fetchone()[0] == 1
    version, result = store.latest_result(uid)  # type: ignore[misc]
    assert version == 1 and result.status == "analyzed" and len(result.instances) == IMAGES
    state = store.study_state(uid)
    assert state is not None and state["state"] == "done" and state["tries"] == 0
