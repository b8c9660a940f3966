"""The mounted app's routing answers: HEAD on the GET routes, and JSON errors for unknown paths
and methods, in the same `{"error", "message"}` shape as every other error."""

from __future__ import annotations

from diagnostics.api.app import create_app
from tests.helpers.asgi import asgi_request

APP = create_app(lambda: None, lambda: None)


def test_get_routes_answer_head() -> None:
    for path in ("/v1/worklist", "/v1/studies/1.2.3"):
        response = asgi_request(APP, "HEAD", path)
        assert response.status_code == 503, path  # routed: the runtime is not built yet


def test_unknown_paths_and_methods_are_json_errors() -> None:
    missing = asgi_request(APP, "GET", "/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"] == "NotFound"
    assert "/v1/nothing-here" in missing.json()["message"]
    wrong = asgi_request(APP, "DELETE", "/v1/worklist")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "MethodNotAllowed"
    assert "GET" in wrong.headers["allow"]
