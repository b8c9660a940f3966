"""The real-world header corpus through the service: `/v1/screen`, STOW-RS and C-STORE (DCMTK
storescu), each with UIDs of its own; then the review page and its image, and the outbox's
delivery of every analysed study's outputs to Orthanc."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from dicomweb_client import DICOMwebClient
from pydicom import dcmread

from tests.helpers.pacs import Orthanc, storescu
from tests.helpers.service import Server, start_service
from tests.helpers.wait import free_port
from tests.realworld.checks import problems
from tests.realworld.corpus import CASES, Built, write_corpus

pytestmark = pytest.mark.slow

TOKEN = "realworld-test-token-0123456789"
CHANNELS = ("v1", "stow", "cstore")
SCREEN_CHUNK = 12
"""Cases per /v1/screen request: a burst of requests, none of them huge."""


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, orthanc: Orthanc) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("realworld-service")
    flags = ["--workers", "1", "--allow-ae", "STORESCU"]
    flags += ["--results-to", f"ORTHANC@127.0.0.1:{orthanc.dicom_port}"]
    env = {"DIAGNOSTICS_STABLE_SECONDS": "1"}
    server = start_service(root, *flags, token=TOKEN, env=env, dicom_port=free_port())
    try:
        yield server
    finally:
        server.stop()


def _multipart(files: list[Path]) -> tuple[bytes, str]:
    boundary = "realworld-corpus-boundary"
    body = b"".join(
        b"--"
        + boundary.encode()
        + b"\r\nContent-Type: application/dicom\r\n\r\n"
        + f.read_bytes()
        + b"\r\n"
        for f in files
    )
    body += b"--" + boundary.encode() + b"--\r\n"
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


def _screen(server: Server, chunk: list[Built]) -> requests.Response:
    body, content_type = _multipart([f for b in chunk for f in b.files])
    return requests.post(
        server.url + "/v1/screen",
        data=body,
        headers={**server.auth, "Content-Type": content_type},
        timeout=900,
    )


@pytest.fixture(scope="module")
def sent(service: Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Built]]:
    """Every case written three times (one set of UIDs per channel) and sent in a burst."""
    root = tmp_path_factory.mktemp("realworld-corpus")
    built = {ch: {b.case.name: b for b in write_corpus(root / ch, ch)} for ch in CHANNELS}
    client = DICOMwebClient(url=service.url + "/dicomweb", headers=service.auth)
    stow = [dcmread(f) for b in built["stow"].values() for f in b.files]
    cstore = [f for b in built["cstore"].values() for f in b.files]
    v1 = list(built["v1"].values())
    with ThreadPoolExecutor(max_workers=4) as pool:
        screens = [
            pool.submit(_screen, service, v1[i : i + SCREEN_CHUNK])
            for i in range(0, len(v1), SCREEN_CHUNK)
        ]
        stored = pool.submit(client.store_instances, stow)
        sending = pool.submit(storescu, service.dicom_port, cstore)
        for future in screens:
            response = future.result()
            # 202 is the contract when screening outlasts the request's wait (a loaded CI
            # machine): everything was stored and `results` below waits for each study.
            assert response.status_code in (200, 202), response.text[:2000]
            if response.status_code == 202:
                assert response.json()["pending"], response.text[:2000]
        stored.result()
        done = sending.result()
        assert done.returncode == 0, done.stderr[-2000:]
    return built


@pytest.fixture(scope="module")
def results(service: Server, sent: dict[str, dict[str, Built]]) -> dict[str, dict[str, Any]]:
    """The latest result of every study of every channel, once all are final."""
    out: dict[str, dict[str, Any]] = {}
    deadline = time.monotonic() + 900
    for channel in CHANNELS:
        for built in sent[channel].values():
            remaining = max(5.0, deadline - time.monotonic())
            state = service.wait_for_result(built.study_uid, timeout=remaining)
            out[built.study_uid] = dict(state["result"])  # type: ignore[call-overload]
    return out


def test_nothing_sent_was_refused(sent: dict[str, dict[str, Built]]) -> None:
    assert {len(cases) for cases in sent.values()} == {len(CASES)}


@pytest.mark.parametrize("channel", CHANNELS)
@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_case(
    sent: dict[str, dict[str, Built]],
    results: dict[str, dict[str, Any]],
    channel: str,
    name: str,
) -> None:
    built = sent[channel][name]
    found = problems(built, results[built.study_uid])
    assert not found, found


@pytest.mark.parametrize("name", [c.name for c in CASES])
def test_review_page_and_image(
    service: Server,
    sent: dict[str, dict[str, Built]],
    results: dict[str, dict[str, Any]],
    name: str,
) -> None:
    built = sent["stow"][name]
    page = service.get(f"/ui/studies/{built.study_uid}")
    assert page.status_code == 200, page.text[:500]
    assert "Traceback" not in page.text
    image = service.get(f"/ui/studies/{built.study_uid}/image/0.png")
    assert image.status_code == 200, image.text[:500]
    assert image.content.startswith(b"\x89PNG")


def test_outbox_delivers_every_analysed_study_to_orthanc(
    orthanc: Orthanc,
    sent: dict[str, dict[str, Built]],
    results: dict[str, dict[str, Any]],
) -> None:
    analysed = [b for ch in CHANNELS for b in sent[ch].values() if b.case.expect == "analyzed"]

    def delivered() -> list[str]:
        missing = []
        for built in analysed:
            found = orthanc.post(
                "/tools/find",
                {
                    "Level": "Series",
                    "Query": {"StudyInstanceUID": built.study_uid, "Modality": "SR"},
                },
            )
            if not found:
                missing.append(built.case.name)
        return missing

    deadline = time.monotonic() + 300
    missing = delivered()
    while missing and time.monotonic() < deadline:
        time.sleep(2)
        missing = delivered()
    assert not missing, f"{len(missing)} analysed studies have no SR in Orthanc: {missing[:10]}"
