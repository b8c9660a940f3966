"""The synchronous screening path: one code path with the worker, a bounded wait answered with
202, waiting requests released at shutdown, and JSON for every error (unexpected ones too)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

import diagnostics.reports
from diagnostics.api.app import create_app
from diagnostics.api.endpoints import screen_upload, store_upload
from diagnostics.api.errors import JsonErrors
from diagnostics.results import StudyResult
from diagnostics.service.runtime import Runtime
from diagnostics.service.settings import ServiceSettings
from diagnostics.synth import SynthConfig, generate
from tests.helpers.asgi import asgi_request
from tests.helpers.wait import wait_for

DICOM = "application/dicom"
ACTOR = "token:abcdef"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("failsafe-synth")
    generate(out, 3, 11, SynthConfig(rows=384, columns=384, spacing_mm=409.6 / 384))
    return sorted(out.glob("study-*/*.dcm"))


def _runtime(storage: Path, wait_s: float, results_to: tuple[str, ...] = ()) -> Runtime:
    # A long stable period: only the requests under test screen anything.
    config = ServiceSettings(
        storage=storage, stable_seconds=3600, screen_wait_seconds=wait_s, results_to=results_to
    )
    runtime = Runtime(config)
    runtime.start()
    return runtime


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    runtime = _runtime(tmp_path / "store", wait_s=60)
    yield runtime
    runtime.stop()


def uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def _in_thread(runtime: Runtime, study: str) -> tuple[threading.Thread, list[StudyResult | None]]:
    answers: list[StudyResult | None] = []
    thread = threading.Thread(target=lambda: answers.append(runtime.screen_now(study)))
    thread.start()
    return thread, answers


def test_a_slow_screening_answers_202_and_its_result_follows(
    tmp_path: Path, files: list[Path]
) -> None:
    runtime = _runtime(tmp_path / "store", wait_s=0)
    try:
        reply = screen_upload(runtime, DICOM, files[0].read_bytes(), ACTOR)
        assert reply.status == 202, reply.body
        study = uid(files[0])
        assert reply.headers["Location"] == f"/v1/studies/{study}"
        assert int(reply.headers["Retry-After"]) > 0
        assert reply.body["pending"] == [study]  # type: ignore[index]
        # The screening the request started goes on and is recorded, once.
        wait_for(lambda: runtime.store.latest_result(study), 60, "the result")
        assert runtime.store.latest_result(study)[0] == 1  # type: ignore[index]
        again = screen_upload(runtime, DICOM, files[0].read_bytes(), ACTOR)
        assert again.status == 200 and again.body["status"] == "analyzed"  # type: ignore[index]
    finally:
        runtime.stop()


def test_a_request_waits_for_the_screening_that_holds_its_study(
    runtime: Runtime, files: list[Path]
) -> None:
    store_upload(runtime, DICOM, files[1].read_bytes(), ACTOR)
    study = uid(files[1])
    claim = runtime.store.claim_study(study)  # the background worker got there first
    assert claim is not None
    thread, answers = _in_thread(runtime, study)
    assert runtime.screening is not None
    assert runtime.screening.screen_claim(claim) == 1  # ...and finishes: the request wakes
    thread.join(60)
    (answer,) = answers
    assert answer is not None and answer.status == "analyzed"


def test_shutdown_answers_waiting_requests_at_once(runtime: Runtime, files: list[Path]) -> None:
    store_upload(runtime, DICOM, files[2].read_bytes(), ACTOR)
    study = uid(files[2])
    held = runtime.store.claim_study(study)  # a screening that will not finish in time
    thread, answers = _in_thread(runtime, study)
    wait_for(lambda: thread.is_alive(), 5, "the request to wait")
    runtime.begin_shutdown()
    thread.join(10)  # not the 60 s it was prepared to wait
    assert not thread.is_alive() and answers == [None]
    assert runtime.store.study_state(study)["claimed_at"] == held.claimed_at  # type: ignore[union-attr,index]


def test_an_output_crash_is_a_result_naming_it_not_a_500(
    tmp_path: Path, files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise TypeError("unsupported operand type(s)")

    monkeypatch.setattr(diagnostics.reports, "build_sr", broken)
    # DICOM outputs are built only for a PACS (nothing listens on port 9: it is never reached).
    runtime = _runtime(tmp_path / "store", wait_s=60, results_to=("PACS@127.0.0.1:9",))
    app = create_app(lambda: runtime, lambda: None)
    try:
        response = asgi_request(
            app,
            "POST",
            "/v1/screen",
            headers={"Content-Type": DICOM},
            content=files[0].read_bytes(),
        )
    finally:
        runtime.stop()
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "analyzed"
    assert [f["output"] for f in body["output_failures"]] == ["sr"]


def test_an_unexpected_error_is_a_json_500_logged_once(
    runtime: Runtime,
    files: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*_: object, **__: object) -> None:
        name = "Doe" + "^Jane"
        raise KeyError(name)  # a message that may quote patient data

    monkeypatch.setattr(Runtime, "screen_studies", broken)
    app = create_app(lambda: runtime, lambda: None)
    with caplog.at_level(logging.ERROR):
        response = asgi_request(
            app,
            "POST",
            "/v1/screen",
            headers={"Content-Type": DICOM},
            content=files[0].read_bytes(),
        )
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"] == "InternalError" and response.json()["message"]
    (logged,) = [r for r in caplog.records if "KeyError" in r.getMessage()]  # once
    assert "in broken" in logged.getMessage()  # the frames, where it happened
    assert "Doe^Jane" not in caplog.text and "Doe^Jane" not in response.text


async def _bentoml_400(_: Request) -> Response:
    return JSONResponse([{"error": "images must be float32"}], status_code=400)


async def _bentoml_validation(_: Request) -> Response:
    detail = [{"type": "value_error", "loc": ["images"], "msg": "Value error, wrong shape"}]
    return JSONResponse({"error": "1 validation error for Input", "detail": detail}, 400)


async def _plain_500(_: Request) -> Response:
    return PlainTextResponse("Internal Server Error", status_code=500)


async def _html_403(_: Request) -> Response:
    return HTMLResponse("<h1>Sign in</h1>", status_code=403)


async def _ours(_: Request) -> Response:
    return JSONResponse(
        {"error": "NotReady", "message": "starting"}, status_code=503, headers={"Retry-After": "5"}
    )


async def _stow_409(_: Request) -> Response:
    return JSONResponse({"00081198": {"vr": "SQ"}}, 409, media_type="application/dicom+json")


async def _crash(_: Request) -> Response:
    raise RuntimeError("boom")


OTHERS = JsonErrors(
    Starlette(
        routes=[
            Route("/bentoml", _bentoml_400, methods=["POST"]),
            Route("/validation", _bentoml_validation),
            Route("/plain", _plain_500),
            Route("/ui", _html_403),
            Route("/ours", _ours),
            Route("/crash", _crash),
            Route("/stow", _stow_409),
        ]
    )
)


def test_error_bodies_of_others_are_rewritten_to_ours() -> None:
    bad = asgi_request(OTHERS, "POST", "/bentoml")
    assert bad.status_code == 400
    assert bad.json() == {"error": "BadRequest", "message": "images must be float32"}
    invalid = asgi_request(OTHERS, "GET", "/validation").json()
    assert invalid["error"] == "BadRequest" and invalid["detail"][0]["loc"] == ["images"]
    assert invalid["message"] == "1 validation error for Input: Value error, wrong shape"
    plain = asgi_request(OTHERS, "GET", "/plain")
    assert plain.status_code == 500 and plain.json()["error"] == "InternalError"
    missing = asgi_request(OTHERS, "GET", "/nowhere")
    assert missing.json()["error"] == "NotFound" and missing.json()["message"] == "Not Found"
    crash = asgi_request(OTHERS, "GET", "/crash")
    assert crash.status_code == 500 and crash.json()["error"] == "InternalError"


def test_our_errors_and_html_pages_pass_unchanged() -> None:
    ours = asgi_request(OTHERS, "GET", "/ours")
    assert ours.json() == {"error": "NotReady", "message": "starting"}
    assert ours.headers["retry-after"] == "5"
    stow = asgi_request(OTHERS, "GET", "/stow")
    assert stow.status_code == 409 and stow.json() == {"00081198": {"vr": "SQ"}}
    page = asgi_request(OTHERS, "GET", "/ui")
    assert page.status_code == 403 and page.text == "<h1>Sign in</h1>"
