"""The real service for tests: `diagnostics serve` in a subprocess on free ports, and the ways
to end it (SIGTERM as an orchestrator does, or `kill -9` of the whole tree as an OOM kill does).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from tests.helpers.synth import ROOT
from tests.helpers.wait import free_port

STARTUP_TIMEOUT_S = 300.0
"""Generous: on a loaded 2-core CI machine the service's start can take minutes. A service that
exits instead is reported at once."""


@dataclass
class Server:
    url: str
    storage: Path
    log: Path
    process: subprocess.Popen[bytes]
    token: str | None = None
    """The bearer token; None: the service runs with `--insecure-dev` (no authentication)."""
    dicom_port: int = 0

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

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

    def stop(self, timeout: float = 60.0) -> None:
        """SIGTERM to `diagnostics serve`, which forwards it; then make sure nothing is left."""
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            children = []
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        _, alive = psutil.wait_procs(children, timeout=10)
        for child in alive:
            child.kill()

    def kill(self) -> None:
        """`kill -9` the service and every process under it, as an OOM kill of its container
        would."""
        with contextlib.suppress(psutil.NoSuchProcess):
            root = psutil.Process(self.process.pid)
            for process in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
        self.process.wait(10)


def start_service(
    root: Path,
    *args: str,
    token: str | None = None,
    env: Mapping[str, str] | None = None,
    port: int | None = None,
    dicom_port: int = 0,
    storage: Path | None = None,
    program: Sequence[str | Path] = (sys.executable, "-m", "diagnostics.cli"),
    cwd: Path = ROOT,
    base_env: Mapping[str, str] | None = None,
) -> Server:
    """`diagnostics serve` on `port` (a free one by default), ready to answer.

    The service sees none of the caller's `DIAGNOSTICS_*` variables, only `env` and `token`
    (without one it runs with `--insecure-dev`). `args` are further flags. Storage defaults to
    `root/storage`; BentoML's home (its metrics folder, which it clears) and the log are in
    `root`; the log is appended to, so a restarted service keeps one log. Fails with the log's
    tail if the service exits or is not ready in time.

    By default this checkout's code runs (`python -m diagnostics.cli` from the repository, on
    PYTHONPATH); an installed copy runs with `program` (its `diagnostics` script), `cwd` and
    `base_env` (the environment to start from instead of this process's).
    """
    storage = storage or root / "storage"
    port = port or free_port()
    command = [*map(str, program), "serve", "--port", str(port)]
    command += ["--dicom-port", str(dicom_port), "--storage", str(storage), *args]
    # Its own BentoML home: the metrics folder in it is cleared at start.
    bentoml = {"BENTOML_HOME": str(root / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    if base_env is None:
        pythonpath = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
        base_env = {**os.environ, "PYTHONPATH": pythonpath, **bentoml}
    else:
        base_env = {**bentoml, **base_env}
    environment = {k: v for k, v in base_env.items() if not k.startswith("DIAGNOSTICS_")}
    environment.update(env or {})
    if token:
        environment["DIAGNOSTICS_API_TOKEN"] = token
    else:
        command.append("--insecure-dev")
    log = root / "server.log"
    with log.open("ab") as sink:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=environment,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # signals to the test run do not reach it, nor its to ours
        )
    server = Server(f"http://127.0.0.1:{port}", storage, log, process, token, dicom_port)
    try:
        _wait_ready(server)
    except BaseException:
        server.kill()
        raise
    return server


def ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + "/readyz", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False  # not listening yet, or still starting up


def _wait_ready(server: Server) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise AssertionError(f"the server exited: {server.log.read_text()[-3000:]}")
        if ready(server.url):
            return
        time.sleep(0.5)
    raise AssertionError(f"not ready in {STARTUP_TIMEOUT_S} s: {server.log.read_text()[-3000:]}")


def ui_session(server: Server, token: str) -> requests.Session:
    """Signed in to the review UI with an API token (before any named user exists), as a
    browser would be: the cookie and what its forms need come with the session."""
    session = requests.Session()
    page = session.get(server.url + "/ui/login", timeout=60)
    nonce = re.search(r'name="nonce" value="([^"]+)"', page.text)
    assert nonce, page.text[:500]
    signed = session.post(
        server.url + "/ui/login",
        data={"token": token, "nonce": nonce[1], "next": "/ui/"},
        timeout=60,
    )
    assert signed.status_code == 200 and "/ui/login" not in signed.url, signed.text[:500]
    return session
