"""End to end: `diagnostics serve` runs the BentoML service; HTTP clients talk to it.

One server for the whole module (BentoML takes seconds to start); each test uses its own
studies, so the tests do not depend on each other's order.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import socket
import time
from pathlib import Path

import numpy as np
import pydicom
import pydicom.uid
import pytest
import requests
from dicomweb_client import DICOMwebClient

from diagnostics.constants import BUNDLED_MODEL
from diagnostics.package import load_package
from diagnostics.store.sqlite import SqliteStore
from diagnostics.synth.study import StudyTruth
from tests.helpers.service import Server
from tests.helpers.synth import SynthFactory
from tests.serving.settings import MAX_REQUEST_BYTES, TOKEN

pytestmark = pytest.mark.slow

OneImageStudies = list[tuple[Path, StudyTruth]]
DICOM = {"Content-Type": "application/dicom"}


def study_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


def related(parts: list[tuple[str, bytes]], boundary: str = "b0undary") -> tuple[bytes, str]:
    body = b"".join(
        f"\r\n--{boundary}\r\nContent-Type: {kind}\r\n\r\n".encode() + data for kind, data in parts
    )
    body += f"\r\n--{boundary}--\r\n".encode()
    return body, f'multipart/related; type="application/dicom"; boundary={boundary}'


# -- open and closed doors -----------------------------------------------------------------


def test_probes_and_metrics_need_no_token(server: Server) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        assert requests.get(server.url + path, timeout=10).status_code == 200, path
    metrics = requests.get(server.url + "/metrics", timeout=10)
    assert metrics.status_code == 200
    assert "diagnostics_queue_depth" in metrics.text
    assert "diagnostics_outbox_depth" in metrics.text


def test_everything_else_needs_a_valid_token_and_refusals_are_audited(server: Server) -> None:
    missing = requests.get(server.url + "/v1/worklist", timeout=10)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    wrong_token = "not-the-token-but-long-enough"
    wrong = requests.post(
        server.url + "/v1/screen",
        data=b"x",
        headers={"Authorization": f"Bearer {wrong_token}", **DICOM},
        timeout=10,
    )
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    assert requests.get(server.url + "/", timeout=10).status_code == 401  # the docs page too
    assert requests.get(server.url + "/v1/studies/1.2.3/fhir", timeout=10).status_code == 401

    # Audited per source and minute (tests/serving/test_metrics_and_refusals.py); the log
    # names the route template, never the raw path, nor any token.
    time.sleep(0.5)  # let the log catch up
    log = server.log.read_text()
    assert "authentication failed (" in log
    assert "/v1/studies/1.2.3/fhir" not in log
    assert wrong_token not in log and TOKEN not in log


def test_docs_page_still_works_with_a_token(server: Server) -> None:
    assert server.get("/").status_code == 200
    spec = server.get("/docs.json").json()
    paths = spec["paths"]
    assert "/v1/infer" in paths
    # The mounted routes are documented too, with the bodies they take and return.
    screen = paths["/v1/screen"]["post"]
    assert "application/dicom" in screen["requestBody"]["content"]
    assert {"200", "202", "400", "401", "413", "415", "422", "503"} <= set(screen["responses"])
    stow = paths["/dicomweb/studies"]["post"]
    assert set(stow["requestBody"]["content"]) == {'multipart/related; type="application/dicom"'}
    assert {"200", "202", "409"} <= set(stow["responses"])
    worklist = paths["/v1/worklist"]["get"]
    assert {p["name"] for p in worklist["parameters"]} == {"status", "finding", "limit", "offset"}
    assert "/v1/studies/{study_uid}" in paths
    assert "application/fhir+json" in str(paths["/v1/studies/{study_uid}/fhir"]["get"])
    schemas = spec["components"]["schemas"]
    assert {"StudyResult", "WorklistPage", "StudyState", "ErrorBody"} <= set(schemas)
    assert not any(path.startswith("/ui") for path in paths)  # pages, not an API


def test_forwarded_proto_from_a_client_nobody_trusts_changes_nothing(server: Server) -> None:
    """No `--trusted-proxy`: X-Forwarded-Proto is believed from nobody, not even 127.0.0.1
    (uvicorn's own default), so a client cannot make the service think it came over https.
    (Believed from a trusted proxy: tests/serving/test_first_contact.py.)"""
    response = requests.get(
        server.url + "/ui/login", headers={"X-Forwarded-Proto": "https"}, timeout=30
    )
    assert response.status_code == 200
    assert "Secure" not in response.headers["set-cookie"]


# -- POST /v1/screen -----------------------------------------------------------------------


def test_screen_returns_the_analysed_result_and_audits_the_sender(
    server: Server, one_image_studies: OneImageStudies
) -> None:
    path, _ = one_image_studies[0]
    response = server.post("/v1/screen", data=path.read_bytes(), headers=DICOM)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["study_instance_uid"] == study_uid(path)
    assert result["status"] == "analyzed"
    assert result["model"]["name"] == "cxr-demo"
    assert {f["code"] for f in result["findings"]} >= {"nodule"}

    actor = "token:" + hashlib.sha256(TOKEN.encode()).hexdigest()[:6]
    received = SqliteStore(server.storage).audit_entries("instances_received")
    assert any(e["actor"] == actor for e in received)
    assert server.get(f"/v1/studies/{result['study_instance_uid']}").json()["version"] == 1


def test_screen_form_upload_of_two_studies_returns_a_list(
    server: Server, one_image_studies: OneImageStudies
) -> None:
    (a, _), (b, _) = one_image_studies[1], one_image_studies[2]
    files = [("file", ("a.dcm", a.read_bytes())), ("file", ("b.dcm", b.read_bytes()))]
    response = server.post("/v1/screen", files=files)
    assert response.status_code == 200, response.text
    results = response.json()
    assert [r["study_instance_uid"] for r in results] == [study_uid(a), study_uid(b)]
    assert all(r["status"] == "analyzed" for r in results)


def test_a_non_dicom_part_is_refused_with_its_reason_and_nothing_is_stored(
    server: Server, one_image_studies: OneImageStudies
) -> None:
    path, _ = one_image_studies[3]
    files = [
        ("file", ("ok.dcm", path.read_bytes(), "application/dicom")),
        ("file", ("notes.txt", b"this is not an image", "application/octet-stream")),
    ]
    response = server.post("/v1/screen", files=files)
    assert response.status_code == 422
    body = response.json()
    assert [(r["part"], r["error"]) for r in body["refused"]] == [(2, "NotDicomError")]
    assert "part 2" in body["message"] and "DICM" in body["message"]
    assert server.get(f"/v1/studies/{study_uid(path)}").status_code == 404


@pytest.mark.parametrize(
    ("content_type", "body", "status", "words"),
    [
        ("multipart/related; type=application/dicom", b"--x\r\n\r\nabc\r\n--x--", 400, "boundary"),
        ("application/dicom", b"", 400, "empty"),
        ('multipart/related; type="application/dicom"; boundary=x', b"no parts", 400, "boundary"),
        ("text/plain", b"hello", 415, "application/dicom"),
        ('multipart/related; type="application/json"; boundary=x', b"--x--", 415, "type"),
    ],
)
def test_malformed_requests_say_what_is_wrong(
    server: Server, content_type: str, body: bytes, status: int, words: str
) -> None:
    response = server.post("/v1/screen", data=body, headers={"Content-Type": content_type})
    assert response.status_code == status, response.text
    assert words in response.json()["message"]


def test_oversized_requests_get_413_declared_or_streamed(server: Server) -> None:
    big = b"\0" * (MAX_REQUEST_BYTES + 1)
    declared = server.post("/v1/screen", data=big, headers=DICOM)
    assert declared.status_code == 413
    assert "limit" in declared.json()["message"]
    chunks = (big[i : i + 65536] for i in range(0, len(big), 65536))
    streamed = server.post("/dicomweb/studies", data=chunks, headers=DICOM)
    assert streamed.status_code == 413


def test_a_client_trickling_its_body_is_cut_off(server: Server) -> None:
    """Slowloris: one byte every half second, against the running BentoML service."""
    host, port = server.url.removeprefix("http://").split(":")
    head = (
        f"POST /dicomweb/studies HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {TOKEN}\r\n"
        "Content-Type: application/dicom\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    sent, answer, reset = 0, b"", False
    with socket.create_connection((host, int(port)), timeout=0.5) as sock:
        sock.sendall(head)
        try:
            while not answer and sent < 60:  # 30 s: far past the 2 s the service allows
                with contextlib.suppress(TimeoutError):
                    answer = sock.recv(65536)
                if not answer:
                    sock.sendall(b"\0")
                    sent += 1
            sock.settimeout(10)
            while chunk := sock.recv(65536):  # to the end: the server closes the connection
                answer += chunk
        except (ConnectionResetError, BrokenPipeError):
            # A byte sent after the server answered and closed makes the peer reset the
            # connection, and the kernel may drop the unread 408 with it: cut off all the same.
            reset = True
    assert sent < 60, "the service kept reading a trickling body"
    assert answer.startswith(b"HTTP/1.1 408") or (reset and not answer), answer[:300]


# -- STOW-RS -------------------------------------------------------------------------------


def test_stow_rs_stores_and_the_worker_screens_later(
    server: Server, one_image_studies: OneImageStudies
) -> None:
    paths = [one_image_studies[4][0], one_image_studies[5][0]]
    client = DICOMwebClient(url=server.url + "/dicomweb", headers=server.auth)
    datasets = [pydicom.dcmread(p) for p in paths]
    response = client.store_instances(datasets)
    stored = {item.ReferencedSOPInstanceUID for item in response.ReferencedSOPSequence}
    assert stored == {str(ds.SOPInstanceUID) for ds in datasets}
    assert all(item.ReferencedSOPClassUID for item in response.ReferencedSOPSequence)
    assert "FailedSOPSequence" not in response
    for path in paths:
        result = server.wait_for_result(study_uid(path))
        assert result["state"] == "done"
        assert result["version"] == 1
        assert result["result"]["status"] == "analyzed"  # type: ignore[index]


def test_an_instance_sent_twice_gives_one_result(
    server: Server, one_image_studies: OneImageStudies
) -> None:
    path, _ = one_image_studies[6]
    uid = study_uid(path)
    client = DICOMwebClient(url=server.url + "/dicomweb", headers=server.auth)
    dataset = pydicom.dcmread(path)
    client.store_instances([dataset])
    client.store_instances([dataset])
    assert server.wait_for_result(uid)["version"] == 1
    client.store_instances([dataset])  # again, after the result
    time.sleep(1.5)  # three times the stable period: a new version would have come by now
    again = server.get(f"/v1/studies/{uid}")
    assert again.status_code == 200
    assert again.json()["version"] == 1
    listed = server.get("/v1/worklist", params={"limit": 500}).json()["items"]
    assert [i["study_instance_uid"] for i in listed].count(uid) == 1


def test_stow_rs_partial_failure_is_202_and_total_failure_409(
    server: Server, one_image_studies: OneImageStudies
) -> None:
    path, _ = one_image_studies[7]
    body, content_type = related(
        [("application/dicom", path.read_bytes()), ("application/dicom", b"junk")]
    )
    response = server.post("/dicomweb/studies", data=body, headers={"Content-Type": content_type})
    assert response.status_code == 202
    assert response.headers["Content-Type"] == "application/dicom+json"
    result = pydicom.Dataset.from_json(response.json())
    assert len(result.ReferencedSOPSequence) == 1
    (failed,) = result.FailedSOPSequence
    assert failed.FailureReason == 0xC000
    assert failed.ErrorComment.startswith("part 2: not a DICOM file")

    body, content_type = related([("text/plain", b"hello")])
    refused = server.post("/dicomweb/studies", data=body, headers={"Content-Type": content_type})
    assert refused.status_code == 409
    (failed,) = pydicom.Dataset.from_json(refused.json()).FailedSOPSequence
    assert "Content-Type text/plain" in failed.ErrorComment


# -- results and worklist ------------------------------------------------------------------


def test_unknown_study_is_404(server: Server) -> None:
    response = server.get("/v1/studies/1.2.3.4.5.6.7.8.9")
    assert response.status_code == 404
    assert response.json()["error"] == "NotFound"


def test_worklist_lists_urgent_first_then_longest_waiting(
    server: Server, one_image_studies: OneImageStudies, synth_factory: SynthFactory
) -> None:
    # Two normal studies, then studies with consolidation until the model flags one: urgent
    # despite arriving last (the bundled catalogue: a consolidation flag raises the study; a
    # nodule or cardiomegaly flag leaves it routine).
    normal = [path for path, truth in one_image_studies[5:] if not any(truth.findings.values())][:2]
    for path in normal:
        assert server.post("/v1/screen", data=path.read_bytes(), headers=DICOM).status_code == 200
    more = synth_factory("serving-consolidation", 24, 11, 384)
    files = sorted(more.folder.glob("study-*/*.dcm"))
    for path, truth in zip(files, more.truths, strict=True):
        if not truth.findings["consolidation"]:
            continue
        response = server.post("/v1/screen", data=path.read_bytes(), headers=DICOM)
        assert response.status_code == 200
        if response.json()["priority"] == "urgent":
            break
    page = server.get("/v1/worklist", params={"limit": 500}).json()
    items = page["items"]
    assert page["total"] == len(items) >= 2
    assert {"urgent", "routine"} <= {i["priority"] for i in items}
    ranks = [(0 if i["priority"] == "urgent" else 1, i["waiting_since"]) for i in items]
    assert ranks == sorted(ranks)
    fields = {"study_instance_uid", "status", "priority", "flagged", "waiting_since", "version"}
    assert all(set(i) >= fields for i in items)

    nodules = server.get("/v1/worklist", params={"finding": "nodule"}).json()["items"]
    assert nodules and all("nodule" in i["flagged"] for i in nodules)
    analysed = server.get("/v1/worklist", params={"status": "analyzed"}).json()
    assert all(i["status"] == "analyzed" for i in analysed["items"])
    second = server.get("/v1/worklist", params={"limit": 1, "offset": 1}).json()
    assert second["items"] == items[1:2]
    bad = server.get("/v1/worklist", params={"status": "maybe"})
    assert bad.status_code == 400 and "status must be one of" in bad.json()["message"]


def test_metrics_count_instances_studies_and_stage_times(
    server: Server, one_image_studies: OneImageStudies
) -> None:
    server.post("/v1/screen", data=one_image_studies[0][0].read_bytes(), headers=DICOM)
    text = requests.get(server.url + "/metrics", timeout=10).text
    assert 'diagnostics_instances_received_total{channel="http",outcome="' in text
    assert 'diagnostics_studies_screened_total{status="analyzed"}' in text
    assert 'diagnostics_stage_seconds_count{stage="infer"}' in text
    assert 'diagnostics_stage_seconds_bucket{le="0.1",stage="preprocess"}' in text


def test_patient_names_ids_and_birth_dates_never_reach_the_log_or_the_audit(
    server: Server, one_image_studies: OneImageStudies
) -> None:
    ds = pydicom.dcmread(one_image_studies[0][0])
    ds.PatientName = "PROBE^PRIVACY^Q"
    ds.PatientID = "PID-PROBE-4711"
    ds.PatientBirthDate = "19230417"
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    data = buffer.getvalue()
    assert server.post("/v1/screen", data=data, headers=DICOM).status_code == 200
    body, content_type = related([("application/dicom", data), ("application/dicom", b"junk")])
    server.post("/dicomweb/studies", data=body, headers={"Content-Type": content_type})
    server.get(f"/v1/studies/{ds.StudyInstanceUID}")
    server.get("/v1/worklist")
    time.sleep(0.5)  # let the log catch up
    seen = server.log.read_text() + repr(SqliteStore(server.storage).audit_entries())
    for secret in ("PROBE", "PRIVACY", "PID-PROBE-4711", "19230417", "1923-04-17"):
        assert secret not in seen, secret


# -- adaptive batching ---------------------------------------------------------------------


def test_batchable_infer_endpoint_takes_preprocessed_tensors(server: Server) -> None:
    manifest = load_package(BUNDLED_MODEL).manifest
    shape = (manifest.input.channels, manifest.input.height, manifest.input.width)
    images = np.zeros((2, *shape), dtype=np.float32).tolist()
    response = server.post("/v1/infer", json={"images": images})
    assert response.status_code == 200, response.text
    probabilities = np.asarray(response.json())
    assert probabilities.shape == (2, len(manifest.findings))
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    wrong = server.post("/v1/infer", json={"images": [[[[0.0]]]]})
    assert wrong.status_code == 400
    # BentoML's own validation error, in our error shape (`diagnostics.api.errors`).
    assert wrong.json()["error"] == "BadRequest"
    assert f"[N, {', '.join(map(str, shape))}]" in wrong.json()["message"]
