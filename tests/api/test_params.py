"""Numbers from requests are range-checked: out-of-range ones are a 4xx naming the parameter,
never a 500 from SQLite's 64-bit integers or Python's 4300-digit limit."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics.api.app import create_app
from diagnostics.api.endpoints import worklist_reply
from diagnostics.api.params import MAX_ID, whole_number
from diagnostics.errors import RequestError
from diagnostics.service.runtime import Runtime
from diagnostics.service.settings import ServiceSettings
from diagnostics.ui import create_ui
from diagnostics.ui.forms import feedback_input
from tests.dicom.bombs import image_dataset, part10
from tests.helpers.asgi import asgi_request

HUGE = "99999999999999999999999"


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (HUGE, "between 0 and"),
        ("9" * 5000, "between 0 and"),
        ("-1", "between 0 and"),
        ("1.5", "whole number"),
        ("١٢", "whole number"),  # Arabic-Indic digits: isdigit() but not ASCII
        ("", "required"),
    ],
)
def test_whole_number_refuses_with_the_parameter_named(raw: str, words: str) -> None:
    with pytest.raises(RequestError, match=words) as caught:
        whole_number(raw, "version")
    assert str(caught.value).startswith("version")


def test_whole_number_accepts_its_range() -> None:
    assert whole_number(" 7 ", "n") == 7
    assert whole_number(str(MAX_ID), "n") == MAX_ID
    assert whole_number(None, "n", default=3) == 3


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    """Not started: these routes need the store, not the model."""
    runtime = Runtime(ServiceSettings(storage=tmp_path / "store", insecure_dev=True))
    runtime.store.receive(part10(image_dataset(32, 32, study="1.2.3.4")), "test")
    return runtime


def test_ui_image_routes_answer_out_of_range_numbers_with_a_json_400(runtime: Runtime) -> None:
    app = create_app(lambda: runtime, lambda: None, [create_ui(lambda: runtime, lambda: None)])
    for path in (
        f"/ui/studies/1.2.3.4/heatmap/0.png?codes=nodule&version={HUGE}",
        f"/ui/studies/1.2.3.4/heatmap/{HUGE}.png?codes=nodule&version=1",
        f"/ui/studies/1.2.3.4/image/{'9' * 5000}.png",
        f"/ui/studies/1.2.3.4/image/0.png?frame={HUGE}",
    ):
        response = asgi_request(app, "GET", path)
        assert response.status_code == 400, (path[:80], response.text)
        assert response.json()["error"] == "RequestError"
    ok = asgi_request(app, "GET", "/ui/studies/1.2.3.4/heatmap/0.png?codes=nodule&version=1")
    assert ok.status_code == 404  # in range: no heatmap stored, an ordinary answer


def test_feedback_version_out_of_range_is_a_request_error() -> None:
    form = {"verdict": "agree", "code": "nodule", "version": HUGE}
    with pytest.raises(RequestError, match="version must be between 1 and"):
        feedback_input("1.2.3.4", form)


def test_worklist_offset_out_of_range_is_a_400(runtime: Runtime) -> None:
    reply = worklist_reply(runtime, {"offset": HUGE}, "test")
    assert reply.status == 400
    assert "offset must be between" in str(reply.body)
