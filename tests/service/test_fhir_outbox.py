"""FHIR reports through the durable outbox: screened studies reach a FHIR server started here
(which validates every resource), survive its outage without duplicates, turn final when read,
and a failed study's report says so."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest

from diagnostics.screening import Screener
from diagnostics.service import fhir_reports
from diagnostics.service.review import mark_read
from diagnostics.service.workers import OutboxWorker, ScreeningWorker
from diagnostics.store.sqlite import SqliteStore
from tests.fhir.server import FhirServer, running
from tests.helpers.synth import BUNDLED, SynthStudies

PACS = "PACS@127.0.0.1:104"


@pytest.fixture(scope="module")
def screener() -> Screener:
    return Screener.load(BUNDLED)


@pytest.fixture
def server() -> Iterator[FhirServer]:
    with running() as started:
        yield started


def screen(store: SqliteStore, screener: Screener, destinations: list[str]) -> None:
    assert ScreeningWorker(store, screener, stable_s=0, destinations=destinations).run_once()


def deliver(store: SqliteStore) -> None:
    OutboxWorker(store, calling_ae="DIAGNOSTICS").run_once()


def retry_now(store: SqliteStore) -> None:
    """The backoff elapsed (tests do not wait for it)."""
    with store.sql_transaction() as db:
        db.execute("UPDATE outbox SET next_attempt = 0 WHERE state = 'pending'")


def report(server: FhirServer) -> dict[str, Any]:
    (only,) = server.of_type("DiagnosticReport")
    return only


def test_a_screened_study_reaches_the_fhir_server_and_turns_final_when_read(
    tmp_path: Path, synth_studies: SynthStudies, screener: Screener, server: FhirServer
) -> None:
    folder, truths = synth_studies
    truth = truths[0]
    store = SqliteStore(tmp_path)
    store.receive((folder / truth.file).read_bytes(), "test")
    fhir = f"fhir+{server.url}"
    screen(store, screener, [PACS, fhir])
    queued = store.due_outbox()
    by_destination = {
        d: {i.path.suffix for i in queued if i.destination == d} for d in (PACS, fhir)
    }
    assert by_destination == {PACS: {".dcm"}, fhir: {".json"}}
    (screened,) = store.audit_entries("study_screened")
    outputs = screened["detail"]["outputs"]  # type: ignore[index]
    assert any(name.endswith(".json") for name in outputs)
    pacs_items = [i for i in queued if i.destination == PACS]
    with store.sql_transaction() as db:  # the PACS is not under test here
        db.executemany(
            "UPDATE outbox SET state = 'sent' WHERE id = ?", [(i.id,) for i in pacs_items]
        )

    deliver(store)
    header = pydicom.dcmread(folder / truth.file, stop_before_pixels=True)
    version, result = store.latest_result(truth.study_instance_uid) or (0, None)
    assert result is not None
    sent = report(server)
    assert sent["status"] == "preliminary"
    assert sent["subject"]["identifier"]["value"] == str(header.PatientID)
    assert sent["imagingStudy"][0]["identifier"]["value"] == f"urn:oid:{truth.study_instance_uid}"
    assert len(server.of_type("Observation")) == len(result.findings)
    assert store.due_outbox() == []
    sent_to = [e["detail"]["destination"] for e in store.audit_entries("result_sent")]  # type: ignore[index]
    assert sent_to.count(fhir) == 1

    mark_read(store, truth.study_instance_uid, "ui:dr-reader")
    (final_item,) = store.due_outbox()
    assert final_item.destination == fhir and "final" in final_item.path.name
    deliver(store)
    after = report(server)
    assert after["id"] == sent["id"] and after["status"] == "final"
    assert after["resultsInterpreter"][0]["identifier"]["value"] == "ui:dr-reader"
    assert len(server.of_type("Observation")) == len(result.findings)

    current = fhir_reports.current_bundle(store, truth.study_instance_uid)
    assert current is not None and current[0] == version
    (entry,) = [
        e for e in current[1]["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"
    ]
    assert entry["resource"]["status"] == "final"


def test_an_outage_is_retried_and_a_resend_does_not_duplicate(
    tmp_path: Path, synth_studies: SynthStudies, screener: Screener, server: FhirServer
) -> None:
    folder, truths = synth_studies
    store = SqliteStore(tmp_path)
    store.receive((folder / truths[1].file).read_bytes(), "test")
    screen(store, screener, [f"fhir+{server.url}"])
    server.outage = True
    deliver(store)
    row = store.connection().execute("SELECT state, attempts, last_error FROM outbox").fetchone()
    assert (row["state"], row["attempts"]) == ("pending", 1)
    assert "503" in row["last_error"]
    assert store.due_outbox() == []  # backing off
    server.outage = False
    retry_now(store)
    deliver(store)
    assert len(server.of_type("DiagnosticReport")) == 1
    # The response was lost after the server committed: the outbox sends it again.
    with store.sql_transaction() as db:
        db.execute("UPDATE outbox SET state = 'pending', next_attempt = 0")
    deliver(store)
    assert server.posts == 3
    assert len(server.of_type("DiagnosticReport")) == 1
    assert len(server.of_type("Device")) == 1
    assert store.due_outbox() == []


def test_a_failed_study_sends_a_report_that_says_so(
    tmp_path: Path, synth_studies: SynthStudies, screener: Screener, server: FhirServer
) -> None:
    folder, truths = synth_studies
    store = SqliteStore(tmp_path)
    store.receive((folder / truths[2].file).read_bytes(), "test")
    for path in store.instances_dir.iterdir():
        path.unlink()
    screen(store, screener, [f"fhir+{server.url}"])
    deliver(store)
    sent = report(server)
    assert "FAILED" in sent["conclusion"] and "not a normal result" in sent["conclusion"]
    assert sent["conclusionCode"][0]["coding"][0]["code"] == "failed"
    assert "result" not in sent and server.of_type("Observation") == []


def test_without_a_fhir_destination_no_bundle_is_queued_but_one_can_be_read(
    tmp_path: Path, synth_studies: SynthStudies, screener: Screener
) -> None:
    folder, truths = synth_studies
    store = SqliteStore(tmp_path)
    store.receive((folder / truths[3].file).read_bytes(), "test")
    screen(store, screener, [PACS])
    assert {i.path.suffix for i in store.due_outbox()} == {".dcm"}
    mark_read(store, truths[3].study_instance_uid, "ui:dr-reader")
    assert {i.path.suffix for i in store.due_outbox()} == {".dcm"}
    current = fhir_reports.current_bundle(store, truths[3].study_instance_uid)
    assert current is not None
    kinds = [e["resource"]["resourceType"] for e in current[1]["entry"]]
    assert kinds.count("DiagnosticReport") == 1 and "Observation" in kinds


def test_a_result_recorded_before_reports_gets_its_context_from_the_instances(
    tmp_path: Path, synth_studies: SynthStudies, screener: Screener
) -> None:
    folder, truths = synth_studies
    truth = truths[4]
    store = SqliteStore(tmp_path)
    store.receive((folder / truth.file).read_bytes(), "test")
    claim = store.claim_study(truth.study_instance_uid)
    assert claim is not None
    outcome = screener.screen(list(claim.paths)).outcomes[0]
    assert store.complete(claim, outcome.result) == 1  # as older versions recorded it
    current = fhir_reports.current_bundle(
        store, truth.study_instance_uid, screener.package.manifest
    )
    assert current is not None
    header = pydicom.dcmread(folder / truth.file, stop_before_pixels=True)
    observations = [e["resource"] for e in current[1]["entry"] if "valueQuantity" in e["resource"]]
    assert {o["subject"]["identifier"]["value"] for o in observations} == {str(header.PatientID)}
    assert all(o["code"]["coding"][0]["system"] == "http://snomed.info/sct" for o in observations)
