"""The real service for `diagnostics bench --service` and `--nodes`: `diagnostics serve` in a
subprocess on free ports with a temporary storage folder and a random token, its cold start, the
resident memory of its processes (from /proc), and the clients that talk to it (HTTP and DCMTK).

Nothing here imports the service: it is measured from outside, as a client would see it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from diagnostics.errors import ConfigurationError
from diagnostics.serve import LIBRARY_ROOT

AE_TITLE = "DIAGNOSTICS"
CALLING_AE = "BENCH"
READY_TIMEOUT_S = 300.0
"""Generous: on a loaded 2-core machine the service's start can take minutes."""
POLL_S = 0.05
"""How often readiness and recorded results are polled: the granularity of those timings."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Service:
    """A started `diagnostics serve`; `stop` ends it and every process under it."""

    process: subprocess.Popen[bytes]
    port: int
    dicom_port: int
    token: str
    log: Path
    cold_start_s: float = 0.0
    processes_at_ready: list[dict[str, object]] = field(default_factory=list)

    def connection(self, timeout: float = 300.0) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def request(
        self,
        connection: http.client.HTTPConnection,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> tuple[int, bytes]:
        """One request on a kept-alive connection; returns status and body."""
        headers = dict(self.headers)
        if content_type is not None:
            headers["Content-Type"] = content_type
        for attempt in (1, 2):
            try:
                connection.request(method, path, body=body, headers=headers)
                response = connection.getresponse()
                return response.status, response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                # The server closes a connection idle past its keep-alive timeout: the request
                # never reached it, so it is sent again on a new connection.
                connection.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def ready(self) -> bool:
        connection = self.connection(timeout=2.0)
        try:
            connection.request("GET", "/readyz")
            response = connection.getresponse()
            response.read()
            return response.status == 200
        except OSError:
            return False  # not listening yet
        finally:
            connection.close()

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM to `diagnostics serve` (it forwards it); then whatever is left of its
        session, by its process group."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)
        return self.process.returncode

    def log_tail(self, size: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-size:]
        except OSError:
            return ""


def serve_command(
    port: int, dicom_port: int, storage: Path, model: Path, engine: str, screen_wait_s: float
) -> list[str]:
    """The `diagnostics serve` line the benchmark runs. `--min-free-disk 0`: the storage is a
    temporary folder, often on a small /tmp, and the run must measure screening, not 507s."""
    return [
        sys.executable,
        "-m",
        "diagnostics.cli",
        "serve",
        *("--port", str(port), "--dicom-port", str(dicom_port), "--storage", str(storage)),
        *("--model", str(model), "--engine", engine, "--workers", "1"),
        *("--ae-title", AE_TITLE, "--allow-ae", CALLING_AE, "--stable-seconds", "0"),
        *("--screen-wait-seconds", f"{screen_wait_s:g}", "--min-free-disk", "0"),
    ]


def start_service(
    root: Path,
    model: Path,
    engine: str,
    *,
    screen_wait_s: float = 120.0,
    storage: Path | None = None,
    database: str | None = None,
    cpus: set[int] | None = None,
) -> Service:
    """`diagnostics serve` from this library's copy, ready; raises ConfigurationError with the
    log's tail when it exits or does not become ready. Stable-seconds 0: a C-STORE'd study is
    screened as soon as the background worker sees it (it polls every half second).

    For several nodes: a shared `storage` folder and `database` URL, and `cpus` to pin the
    node's processes to (as if it had a machine of that many cores to itself)."""
    root.mkdir(parents=True, exist_ok=True)
    port, dicom_port = free_port(), free_port()
    token = secrets.token_urlsafe(24)
    storage = storage or root / "storage"
    command = serve_command(port, dicom_port, storage, model, engine, screen_wait_s)
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIAGNOSTICS_")}
    env["DIAGNOSTICS_API_TOKEN"] = token
    if database is not None:
        env["DIAGNOSTICS_DATABASE_URL"] = database
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(LIBRARY_ROOT), env.get("PYTHONPATH")]))
    env["BENTOML_DO_NOT_TRACK"] = "True"
    log = root / "service.log"
    began = time.perf_counter()
    with log.open("ab") as sink:
        process = subprocess.Popen(
            command,
            cwd=root,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            # The affinity is inherited by every process the node starts (workers included).
            preexec_fn=None if cpus is None else partial(os.sched_setaffinity, 0, cpus),
        )
    service = Service(process, port, dicom_port, token, log)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not service.ready():
            if process.poll() is not None:
                raise ConfigurationError(
                    f"bench: the service exited ({process.returncode}): {service.log_tail()}"
                )
            if time.monotonic() > deadline:
                raise ConfigurationError(
                    f"bench: the service was not ready in {READY_TIMEOUT_S:g} s: "
                    f"{service.log_tail()}"
                )
            time.sleep(POLL_S)
        service.cold_start_s = time.perf_counter() - began
        service.processes_at_ready = process_memory(process.pid)
    except BaseException:
        service.stop()
        raise
    return service


# -- memory, from /proc ------------------------------------------------------------------------


def _parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])  # the command may hold spaces and parens


def descendants(root: int) -> list[int]:
    """`root` and every process under it, from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            parent = _parent_of(int(entry.name))
            if parent is not None:
                children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return sorted(found)


def _status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def role(command: list[str]) -> str:
    """What a process of the service is, from its command line."""
    text = " ".join(command)
    if "diagnostics.cli" in text and " serve" in text:
        return "cli"  # `diagnostics serve`: preflight, then waits on the server
    if "bentoml" in text and " serve " in f"{text} " and "worker" not in text:
        return "supervisor"  # BentoML's arbiter: sockets and watchers
    return "worker"


def process_memory(root: int) -> list[dict[str, object]]:
    """Each process of the service: pid, role, resident and proportional set size in MiB
    (PSS shares pages common to several processes out among them)."""
    rows: list[dict[str, object]] = []
    for pid in descendants(root):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        words = [part.decode(errors="replace") for part in command if part]
        rss = _status_kib(pid, "VmRSS")
        if rss is None:
            continue
        pss = None
        with contextlib.suppress(OSError, ValueError, IndexError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    pss = int(line.split()[1]) / 1024
        rows.append({"pid": pid, "role": role(words), "rss_mib": rss / 1024, "pss_mib": pss})
    return rows


def memory_summary(rows: list[dict[str, object]]) -> dict[str, object]:
    workers = [float(str(r["rss_mib"])) for r in rows if r["role"] == "worker"]
    return {
        "processes": rows,
        "worker_rss_mib": workers,
        "rss_mib_per_worker": max(workers) if workers else None,
        "total_rss_mib": sum(float(str(r["rss_mib"])) for r in rows),
        # Shared pages (the library and its imports) counted once: the memory really used.
        "total_pss_mib": sum(float(str(r["pss_mib"] or 0.0)) for r in rows),
    }


# -- C-STORE ---------------------------------------------------------------------------------


def storescu() -> str | None:
    return shutil.which("storescu")


def cstore(service: Service, path: Path) -> None:
    """Send one file with DCMTK's storescu; raises ConfigurationError on failure."""
    program = storescu()
    if program is None:
        raise ConfigurationError("storescu (DCMTK) is not installed")
    command = [program, "-aet", CALLING_AE, "-aec", AE_TITLE, "127.0.0.1"]
    result = subprocess.run(
        [*command, str(service.dicom_port), str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if result.returncode != 0:
        raise ConfigurationError(f"storescu failed ({result.returncode}): {result.stderr[-500:]}")


def wait_recorded(
    service: Service, connection: http.client.HTTPConnection, study: str, timeout: float = 120.0
) -> dict[str, object]:
    """Poll `GET /v1/studies/{uid}` until the result is recorded (200)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, body = service.request(connection, "GET", f"/v1/studies/{study}")
        if status == 200:
            return dict(json.loads(body))
        if status not in (202, 404):
            raise ConfigurationError(f"GET /v1/studies: HTTP {status}")
        time.sleep(POLL_S)  # each read is audited: not too often
    raise ConfigurationError(f"bench: no result recorded within {timeout:g} s")
