"""`--report-language`: the service's FHIR reports, sent and served, are written in it, and a
result keeps the language its first report was written in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from diagnostics.api.endpoints import screen_upload
from diagnostics.api.fhir import fhir_reply
from diagnostics.i18n import translator
from diagnostics.service.review import mark_read
from diagnostics.service.runtime import Runtime
from diagnostics.service.settings import ServiceSettings
from diagnostics.synth import SynthConfig, generate
from tests.fhir.server import FhirServer, running
from tests.helpers.wait import wait_for

ACTOR = "token:abcdef"
TOKEN = "emr-bearer-token-0123456789"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("api-fhir-language-synth")
    generate(out, 1, 23, SynthConfig(rows=384, columns=384, spacing_mm=409.6 / 384))
    return sorted(out.glob("study-*/*.dcm"))


@pytest.fixture
def server() -> Iterator[FhirServer]:
    with running(authorization=f"Bearer {TOKEN}") as started:
        yield started


def start(storage: Path, server: FhirServer, language: str) -> Runtime:
    auth = storage.parent / "fhir-auth"
    auth.write_text(f"Bearer {TOKEN}\n")
    config = ServiceSettings(
        storage=storage,
        stable_seconds=3600,
        results_to=(f"fhir+{server.url}",),
        results_auth_file=auth,
        report_language=language,  # type: ignore[arg-type]
    )
    runtime = Runtime(config)
    runtime.start()
    return runtime


def test_reports_are_sent_and_served_in_the_report_language(
    tmp_path: Path, server: FhirServer, files: list[Path]
) -> None:
    study = str(pydicom.dcmread(files[0], stop_before_pixels=True).StudyInstanceUID)
    storage = tmp_path / "store"
    runtime = start(storage, server, "ru")
    try:
        reply = screen_upload(runtime, "application/dicom", files[0].read_bytes(), ACTOR)
        assert reply.status == 200
        (sent,) = wait_for(lambda: server.of_type("DiagnosticReport"), 30, "the report")
        assert sent["language"] == "ru"
        assert translator("ru").gettext("AI pre-screening, not for diagnosis") in sent["conclusion"]
        assert {o["language"] for o in server.of_type("Observation")} == {"ru"}
    finally:
        runtime.stop()

    # Restarted in Uzbek: the result already reported keeps its Russian, served and final.
    runtime = start(storage, server, "uz")
    try:
        served = fhir_reply(runtime, study, ACTOR)
        assert served.status == 200
        assert isinstance(served.body, dict)
        (report,) = [e["resource"] for e in served.body["entry"] if "conclusion" in e["resource"]]
        assert report["language"] == "ru" and report["conclusion"] == sent["conclusion"]
        mark_read(runtime.store, study, "ui:dr-reader")
        final = wait_for(
            lambda: [r for r in server.of_type("DiagnosticReport") if r["status"] == "final"],
            30,
            "the final report",
        )
        assert final[0]["language"] == "ru" and final[0]["conclusion"] == sent["conclusion"]
    finally:
        runtime.stop()
