"""`GET /v1/studies/{uid}/fhir` on a real Runtime whose results also go to a FHIR server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from diagnostics.api.app import create_app
from diagnostics.api.endpoints import screen_upload
from diagnostics.api.fhir import fhir_reply
from diagnostics.service.review import mark_read
from diagnostics.service.runtime import Runtime
from diagnostics.service.settings import ServiceSettings
from diagnostics.synth import SynthConfig, generate
from tests.fhir.server import FhirServer, running
from tests.helpers.asgi import asgi_request
from tests.helpers.wait import wait_for

ACTOR = "token:abcdef"
TOKEN = "emr-bearer-token-0123456789"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("api-fhir-synth")
    generate(out, 2, 19, SynthConfig(rows=384, columns=384, spacing_mm=409.6 / 384))
    return sorted(out.glob("study-*/*.dcm"))


@pytest.fixture
def server() -> Iterator[FhirServer]:
    with running(authorization=f"Bearer {TOKEN}") as started:
        yield started


@pytest.fixture
def runtime(tmp_path: Path, server: FhirServer) -> Iterator[Runtime]:
    auth = tmp_path / "fhir-auth"
    auth.write_text(f"Bearer {TOKEN}\n")
    config = ServiceSettings(
        storage=tmp_path / "store",
        stable_seconds=3600,
        results_to=(f"fhir+{server.url}",),
        results_auth_file=auth,
    )
    runtime = Runtime(config)
    runtime.start()
    yield runtime
    runtime.stop()


def test_the_bundle_is_served_and_sent(
    runtime: Runtime, server: FhirServer, files: list[Path]
) -> None:
    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    assert fhir_reply(runtime, study, ACTOR).status == 404
    assert screen_upload(runtime, "application/dicom", files[0].read_bytes(), ACTOR).status == 200

    app = create_app(lambda: runtime, lambda: None)
    response = asgi_request(app, "GET", f"/v1/studies/{study}/fhir")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "transaction"
    (report,) = [e["resource"] for e in bundle["entry"] if "conclusion" in e["resource"]]
    assert report["status"] == "preliminary"
    assert runtime.store.audit_entries("fhir_report_read")[0]["actor"] == "client:192.0.2.7"

    sent = wait_for(lambda: server.of_type("DiagnosticReport"), 30, "the report at the EMR")
    assert sent[0]["identifier"] == report["identifier"]

    mark_read(runtime.store, study, "ui:dr-reader")
    wait_for(
        lambda: [r for r in server.of_type("DiagnosticReport") if r["status"] == "final"],
        30,
        "the final report at the EMR",
    )
    assert len(server.of_type("DiagnosticReport")) == 1
    again = asgi_request(app, "GET", f"/v1/studies/{study}/fhir").json()
    (final,) = [e["resource"] for e in again["entry"] if "conclusion" in e["resource"]]
    assert final["status"] == "final"


def test_the_route_answers_head_and_waits_for_the_runtime() -> None:
    app = create_app(lambda: None, lambda: None)
    assert asgi_request(app, "HEAD", "/v1/studies/1.2.3/fhir").status_code == 503
