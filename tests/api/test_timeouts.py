"""Slow clients are cut off: a real uvicorn server on loopback, a real socket trickling bytes."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from diagnostics.api.app import create_app
from diagnostics.api.timeouts import BodyReadTimeout
from diagnostics.service.runtime import Runtime
from diagnostics.service.settings import ServiceSettings
from tests.dicom.bombs import image_dataset, part10

PACE = (1.0, 16)
"""One second for the first bytes, then 16 bytes a second: a trickle of 4 a second fails."""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Runtime]]:
    runtime = Runtime(ServiceSettings(storage=tmp_path_factory.mktemp("slow"), stable_seconds=3600))
    runtime.start()
    app = BodyReadTimeout(create_app(lambda: runtime, lambda: None), pace=PACE)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield port, runtime
    server.should_exit = True
    thread.join(10)
    runtime.stop()


def _request_head(length: int) -> bytes:
    return (
        "POST /dicomweb/studies HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/dicom\r\nContent-Length: {length}\r\n\r\n"
    ).encode()


def _read_all(sock: socket.socket) -> tuple[bytes, bool]:
    """Everything until the server closes the connection (True) or the socket's timeout
    passes (False)."""
    chunks = []
    with contextlib.suppress(TimeoutError):
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks), True
    return b"".join(chunks), False


def test_a_trickling_body_is_cut_off_with_408_and_the_connection_closed(
    server: tuple[int, Runtime],
) -> None:
    port, runtime = server
    body = part10(image_dataset(32, 32))
    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(_request_head(len(body)))
        sock.setblocking(False)
        answer = b""
        # One byte every 0.25 s (the whole body would take 20 minutes); a tenth of it at most.
        while sent < len(body) // 10:
            with contextlib.suppress(BlockingIOError):
                answer = sock.recv(65536)
            if answer:
                break
            try:
                sock.send(body[sent : sent + 1])
            except (BrokenPipeError, ConnectionResetError):
                break
            sent += 1
            time.sleep(0.25)
        sock.settimeout(10)
        rest, closed = _read_all(sock)
        answer += rest
    assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
    assert b"connection: close" in answer.lower()
    assert closed, "the server kept the connection open after cutting the request off"
    assert b"RequestTimeoutError" in answer
    assert sent < len(body) // 10, f"the server waited for {sent} of {len(body)} bytes"
    assert sent >= 1  # it was the trickle that was cut off, not the request head
    assert runtime.store.counts()["instances"] == 0


def test_an_upload_that_keeps_pace_is_stored(server: tuple[int, Runtime]) -> None:
    port, runtime = server
    body = part10(image_dataset(32, 32))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(_request_head(len(body)) + body)
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert runtime.store.counts()["instances"] == 1


def test_requests_without_a_body_are_not_paced(tmp_path: Path) -> None:
    """GET requests and the disconnect wait after a complete body pass straight through."""
    import anyio

    messages = [{"type": "http.request", "body": b"", "more_body": False}]

    async def app(scope: object, receive: object, send: object) -> None:
        first = await receive()  # type: ignore[operator]
        assert first["type"] == "http.request"
        await anyio.sleep(PACE[0] * 1.5)
        second = await receive()  # type: ignore[operator]
        assert second["type"] == "http.disconnect"  # after the deadline: still not cut off

    async def receive() -> dict[str, object]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: object) -> None:
        raise AssertionError(f"nothing should be sent: {message}")

    wrapped = BodyReadTimeout(app, pace=PACE)  # type: ignore[arg-type]
    anyio.run(wrapped, {"type": "http", "path": "/"}, receive, send)
