"""Endpoint logic on a real Runtime (bundled model, temporary store), without a server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
from prometheus_client import CollectorRegistry

from diagnostics.api.endpoints import screen_upload, store_upload, study_reply, worklist_reply
from diagnostics.api.metrics import ServiceMetrics, render_metrics
from diagnostics.service.runtime import Runtime
from diagnostics.service.settings import ServiceSettings
from diagnostics.synth import SynthConfig, generate

DICOM = "application/dicom"
ACTOR = "token:abcdef"


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("api-synth")
    generate(out, 3, 3, SynthConfig(rows=384, columns=384, spacing_mm=409.6 / 384))
    return sorted(out.glob("study-*/*.dcm"))


@pytest.fixture
def metrics() -> ServiceMetrics:
    return ServiceMetrics(CollectorRegistry())


@pytest.fixture
def runtime(tmp_path: Path, metrics: ServiceMetrics) -> Iterator[Runtime]:
    # A long stable period: the background worker leaves studies alone, so tests see "waiting".
    config = ServiceSettings(storage=tmp_path / "store", stable_seconds=3600)
    runtime = Runtime(config, on_batch=metrics.observe_batch)
    runtime.start()
    yield runtime
    runtime.stop()


def uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def sample(metrics: ServiceMetrics, name: str, **labels: str) -> float:
    for metric in (metrics.instances, metrics.studies):
        for family in metric.collect():
            for s in family.samples:
                if s.name == name and s.labels == labels:
                    return float(s.value)
    return 0.0


def test_screen_stores_screens_and_counts(
    runtime: Runtime, metrics: ServiceMetrics, files: list[Path]
) -> None:
    reply = screen_upload(runtime, DICOM, files[0].read_bytes(), ACTOR, metrics)
    assert reply.status == 200
    assert reply.body["study_instance_uid"] == uid(files[0])  # type: ignore[index]
    assert reply.body["status"] == "analyzed"  # type: ignore[index]
    stored = "diagnostics_instances_received_total"
    assert sample(metrics, stored, channel="http", outcome="stored") == 1
    assert sample(metrics, "diagnostics_studies_screened_total", status="analyzed") == 1
    again = screen_upload(runtime, DICOM, files[0].read_bytes(), ACTOR, metrics)
    assert again.status == 200
    assert sample(metrics, stored, channel="http", outcome="duplicate") == 1
    assert runtime.store.latest_result(uid(files[0]))[0] == 1  # type: ignore[index]
    audit = runtime.store.audit_entries("instances_received")
    assert {e["actor"] for e in audit} == {ACTOR}


def test_screen_refuses_all_or_nothing(runtime: Runtime, files: list[Path]) -> None:
    body = (
        b"--b\r\nContent-Type: application/dicom\r\n\r\n"
        + files[1].read_bytes()
        + b"\r\n--b\r\nContent-Type: application/dicom\r\n\r\nnot dicom\r\n--b--\r\n"
    )
    reply = screen_upload(runtime, "multipart/related; boundary=b", body, ACTOR)
    assert reply.status == 422
    assert reply.body["refused"][0]["part"] == 2  # type: ignore[index]
    assert runtime.store.study_state(uid(files[1])) is None


def test_study_states_404_202_200(runtime: Runtime, files: list[Path]) -> None:
    assert study_reply(runtime, "1.2.3", ACTOR).status == 404
    store_upload(runtime, DICOM, files[2].read_bytes(), ACTOR)
    waiting = study_reply(runtime, uid(files[2]), ACTOR)
    assert waiting.status == 202
    assert waiting.body["state"] == "waiting" and waiting.body["result"] is None  # type: ignore[index]
    assert int(waiting.headers["Retry-After"]) >= 1
    runtime.screen_now(uid(files[2]))
    done = study_reply(runtime, uid(files[2]), ACTOR)
    assert done.status == 200
    assert done.body["version"] == 1  # type: ignore[index]


def test_stow_reply_is_dicom_json(runtime: Runtime, files: list[Path]) -> None:
    reply = store_upload(runtime, DICOM, files[2].read_bytes(), ACTOR)
    assert reply.status == 200 and reply.media_type == "application/dicom+json"
    ds = pydicom.Dataset.from_json(reply.body)  # type: ignore[arg-type]
    assert ds.ReferencedSOPSequence[0].ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.1.1"
    assert store_upload(runtime, DICOM, b"junk", ACTOR).status == 409


def test_worklist_paging_and_query_checks(runtime: Runtime, files: list[Path]) -> None:
    for path in files:
        screen_upload(runtime, DICOM, path.read_bytes(), ACTOR)
    page = worklist_reply(runtime, {}, ACTOR).body
    items = page["items"]  # type: ignore[index]
    assert page["total"] == 3  # type: ignore[index]
    ranks = [(i["priority"] != "urgent", i["waiting_since"]) for i in items]
    assert ranks == sorted(ranks)
    assert worklist_reply(runtime, {"limit": "2", "offset": "1"}, ACTOR).body["items"] == items[1:]  # type: ignore[index]
    for query, words in [
        ({"limit": "0"}, "between 1 and 500"),
        ({"offset": "x"}, "whole number"),
        ({"status": "done"}, "status must be one of"),
        ({"finding": "a,b"}, "one finding code"),
        ({"sort": "name"}, "unknown query parameter"),
    ]:
        reply = worklist_reply(runtime, query, ACTOR)
        assert reply.status == 400 and words in reply.body["message"], query  # type: ignore[index]
    assert worklist_reply(runtime, {"status": "pending"}, ACTOR).body["total"] == 0  # type: ignore[index]


def test_gauges_read_the_queue_the_disk_and_the_model(runtime: Runtime, files: list[Path]) -> None:
    store_upload(runtime, DICOM, files[0].read_bytes(), ACTOR)
    text = render_metrics(runtime).decode()
    assert 'diagnostics_queue_depth{state="waiting"} 1.0' in text
    assert "diagnostics_outbox_depth 0.0" in text
    assert "diagnostics_outbox_oldest_age_seconds 0.0" in text
    assert "diagnostics_instances_stored 1.0" in text
    (free,) = [line for line in text.splitlines() if line.startswith("diagnostics_storage_free")]
    assert float(free.split()[-1]) > 0
    assert runtime.screener is not None
    model = runtime.screener.model_ref
    assert f'diagnostics_model_info{{name="{model.name}",version="{model.version}"}} 1.0' in text
