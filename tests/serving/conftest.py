"""The real service, started once per module with `diagnostics serve` on free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests

from diagnostics.synth import SynthConfig, generate
from diagnostics.synth.study import StudyTruth

FIELD_OF_VIEW_MM = 409.6
TOKEN = "serving-test-token-0123456789"
MAX_REQUEST_BYTES = 2_000_000
READ_TIMEOUT_S = 2.0
"""Short, so that the slow-client test is quick; loopback uploads keep pace easily."""
"""Small enough for a 413 test, large enough for a few 384-pixel instances per request."""
STARTUP_TIMEOUT_S = 90.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    storage: Path
    log: Path
    process: subprocess.Popen[bytes]

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKEN}"}

    def get(self, path: str, **kwargs: object) -> requests.Response:
        return requests.get(self.url + path, headers=self.auth, timeout=60, **kwargs)  # type: ignore[arg-type]

    def post(self, path: str, **kwargs: object) -> requests.Response:
        headers = {**self.auth, **kwargs.pop("headers", {})}  # type: ignore[dict-item]
        return requests.post(self.url + path, headers=headers, timeout=120, **kwargs)  # type: ignore[arg-type]

    def wait_for_result(self, study_uid: str, timeout: float = 30.0) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.get(f"/v1/studies/{study_uid}")
            if response.status_code == 200:
                return dict(response.json())
            assert response.status_code in (202, 404), response.text
            time.sleep(0.2)
        raise AssertionError(f"no result for {study_uid} within {timeout} s")


@pytest.fixture(scope="session")
def studies(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[Path, StudyTruth]]:
    """Ten one-image studies at 384 pixels over the training field of view."""
    out = tmp_path_factory.mktemp("serving-synth")
    config = SynthConfig(rows=384, columns=384, spacing_mm=FIELD_OF_VIEW_MM / 384)
    truths = generate(out, 10, 3, config)
    files = sorted(out.glob("study-*/*.dcm"))
    assert len(files) == len(truths)
    return list(zip(files, truths, strict=True))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("serving")
    storage = root / "storage"
    port = free_port()
    env = {
        **os.environ,
        "DIAGNOSTICS_API_TOKEN": TOKEN,
        "DIAGNOSTICS_STABLE_SECONDS": "0.5",
        "DIAGNOSTICS_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
        "DIAGNOSTICS_REQUEST_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
        "BENTOML_HOME": str(root / "bentoml"),  # its own metrics folder, which it clears
        "BENTOML_DO_NOT_TRACK": "True",
    }
    for name in ("DIAGNOSTICS_API_TOKEN_FILE", "DIAGNOSTICS_INSECURE_DEV", "DIAGNOSTICS_ALLOW_AE"):
        env.pop(name, None)
    log = root / "server.log"
    command = [
        sys.executable,
        "-m",
        "diagnostics.cli",
        "serve",
        "--port",
        str(port),
        "--dicom-port",
        "0",
        "--storage",
        str(storage),
        "--workers",
        "1",
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env=env, stdout=sink, stderr=subprocess.STDOUT)
    server = Server(f"http://127.0.0.1:{port}", storage, log, process)
    try:
        _wait_ready(server)
        yield server
    finally:
        _stop(process)


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"the server exited: {server.log.read_text()[-3000:]}")
        try:
            if requests.get(server.url + "/readyz", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass  # not listening yet, or still starting up
        time.sleep(0.5)
    raise AssertionError(f"not ready in {STARTUP_TIMEOUT_S} s: {server.log.read_text()[-3000:]}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to `diagnostics serve`, which forwards it; then make sure nothing is left."""
    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    _, alive = psutil.wait_procs(children, timeout=10)
    for child in alive:
        child.kill()
