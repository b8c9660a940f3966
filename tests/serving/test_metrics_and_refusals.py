"""The real service under a flood of unauthenticated requests and refused instances: `/metrics`
stays the same size and names no path, refusals are cheap (one audit row per source and
minute, one log line), and no header value of a refused instance reaches the log or the audit.

Its own server (the DICOM listener on, for the C-STORE refusals), stopped by the last test to
see the refusals its shutdown writes.
"""

from __future__ import annotations

import io
import random
import string
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pydicom
import pydicom.uid
import pytest
import requests
from pynetdicom import AE

from diagnostics.store.sqlite import SqliteStore
from diagnostics.synth.study import StudyTruth
from tests.helpers.service import Server, start_service
from tests.helpers.wait import free_port
from tests.serving.settings import TOKEN

pytestmark = pytest.mark.slow

Studies = list[tuple[Path, StudyTruth]]
FLOOD = 10_000
THREADS = 8
CALLING_AE = "MODALITY7"
PROBES = {
    "StudyInstanceUID": "PROBE^UIDNAME^Q",
    "PhotometricInterpretation": "PROBE^PHOTO^Q",
    "BodyPartExamined": "PROBE^BODY^Q",
    "ViewPosition": "PROBE^VIEW^Q",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("refusals")
    server = start_service(
        root,
        *("--allow-ae", CALLING_AE, "--workers", "1"),
        token=TOKEN,
        env={"DIAGNOSTICS_STABLE_SECONDS": "0.5"},
        dicom_port=free_port(),
    )
    try:
        yield server
    finally:
        server.stop()


def metrics_page(server: Server) -> str:
    response = requests.get(server.url + "/metrics", timeout=30)
    assert response.status_code == 200
    return response.text


def random_paths(count: int) -> list[str]:
    rng = random.Random(13)
    paths = []
    for i in range(count):
        word = "".join(rng.choices(string.ascii_letters, k=8))
        uid = f"1.2.826.0.1.3680043.15.{i}"
        paths.append(
            rng.choice(
                [
                    f"/{word}/{i}",
                    f"/v1/studies/{uid}",
                    f"/v1/studies/{uid}/fhir",
                    f"/ui/studies/{uid}",
                    f"/{word}%00{i}",
                ]
            )
        )
    return paths


def test_the_metrics_folder_is_the_instances_own(server: Server) -> None:
    folder = server.storage / "bentoml" / "prometheus_multiproc_dir"
    metrics_page(server)
    assert folder.is_dir() and any(folder.iterdir())
    assert not (server.log.parent / "elsewhere" / "prometheus_multiproc_dir").exists()


def test_a_flood_of_unauthenticated_random_paths_leaves_metrics_and_log_alone(
    server: Server,
) -> None:
    # Every series that will exist, once: a refusal and an answered request of each kind.
    requests.get(server.url + "/v1/worklist", timeout=10)
    requests.get(server.url + "/v1/worklist", headers={"Authorization": f"Bearer {TOKEN}"})
    before = metrics_page(server)
    folder = server.storage / "bentoml" / "prometheus_multiproc_dir"
    files_before = sum(f.stat().st_size for f in folder.iterdir())
    log_before = server.log.stat().st_size
    paths = random_paths(FLOOD)

    def send(chunk: list[str]) -> set[int]:
        with requests.Session() as session:
            return {
                session.get(server.url + p, timeout=30, allow_redirects=False).status_code
                for p in chunk
            }

    started = time.monotonic()
    with ThreadPoolExecutor(THREADS) as pool:
        statuses = set().union(*pool.map(send, [paths[i::THREADS] for i in range(THREADS)]))
    elapsed = time.monotonic() - started
    print(f"{FLOOD} unauthenticated requests in {elapsed:.1f} s")
    assert statuses <= {401, 303}, statuses  # 303: a browser sent to sign in
    after = metrics_page(server)
    assert abs(len(after) - len(before)) <= 16, "only counter digits may change"
    for path in paths:
        assert path not in after
    assert "1.2.826.0.1.3680043.15." not in after
    failures = [ln for ln in after.splitlines() if ln.startswith("diagnostics_auth_failures_total")]
    assert sum(float(line.split()[-1]) for line in failures) >= FLOOD
    assert sum(f.stat().st_size for f in folder.iterdir()) == files_before  # no new series
    time.sleep(0.5)  # let the log catch up
    logged = server.log.read_bytes()[log_before:].decode("utf-8", "replace")
    assert len(logged) < 20_000, f"{len(logged)} bytes logged for {FLOOD} refusals"
    assert "1.2.826.0.1.3680043.15." not in logged


def _refused_instances(studies: Studies) -> dict[str, bytes]:
    """Instances the service refuses, with patient-like strings in the offending header."""
    out: dict[str, bytes] = {}
    for index, keyword in enumerate(("StudyInstanceUID", "PhotometricInterpretation")):
        ds = pydicom.dcmread(studies[index][0])
        setattr(ds, keyword, PROBES[keyword])
        if keyword != "StudyInstanceUID":
            ds.StudyInstanceUID = pydicom.uid.generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        buffer = io.BytesIO()
        ds.save_as(buffer, enforce_file_format=True)
        out[keyword] = buffer.getvalue()
    return out


def _out_of_scope(studies: Studies) -> bytes:
    """Stored, then not analysed: Body Part and View outside the model's scope."""
    ds = pydicom.dcmread(studies[2][0])
    ds.BodyPartExamined = PROBES["BodyPartExamined"]
    ds.ViewPosition = PROBES["ViewPosition"]
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SeriesInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _c_store(server: Server, data: bytes) -> int:
    ds = pydicom.dcmread(io.BytesIO(data))
    ae = AE(ae_title=CALLING_AE)
    ae.add_requested_context(ds.SOPClassUID, ds.file_meta.TransferSyntaxUID)
    port = server.dicom_port
    assoc = ae.associate("127.0.0.1", port, ae_title="DIAGNOSTICS")
    assert assoc.is_established
    try:
        status = assoc.send_c_store(ds)
    finally:
        assoc.release()
    return int(status.Status)


def test_header_values_of_refused_instances_never_reach_the_log_or_the_audit(
    server: Server, one_image_studies: Studies
) -> None:
    auth = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/dicom"}
    for keyword, data in _refused_instances(one_image_studies).items():
        screened = requests.post(server.url + "/v1/screen", data=data, headers=auth, timeout=60)
        assert screened.status_code == 422, (keyword, screened.text)
        assert PROBES[keyword] in screened.text  # the sender learns what was wrong
        boundary = "probe-boundary"
        body = (
            f"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode()
            + data
            + f"\r\n--{boundary}--\r\n".encode()
        )
        stow = requests.post(
            server.url + "/dicomweb/studies",
            data=body,
            headers={
                "Authorization": f"Bearer {TOKEN}",
                "Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}',
            },
            timeout=60,
        )
        assert stow.status_code == 409, (keyword, stow.text)
        assert _c_store(server, data) != 0  # refused over DIMSE too
    scoped = requests.post(
        server.url + "/v1/screen", data=_out_of_scope(one_image_studies), headers=auth
    )
    assert scoped.status_code == 200 and scoped.json()["status"] == "not_analyzed"
    time.sleep(0.5)  # let the log catch up
    text = server.log.read_text("utf-8", "replace")
    audit = repr(SqliteStore(server.storage).audit_entries())
    assert "refused (CorruptDicomError: StudyInstanceUID)" in text
    assert "UnsupportedDicomError: PhotometricInterpretation" in audit  # the DIMSE refusal
    for probe in PROBES.values():
        assert probe not in text, probe
        assert probe not in audit, probe
    assert "PROBE^" not in text + audit


def test_refusals_are_audited_once_per_source_and_minute_at_shutdown(server: Server) -> None:
    server.stop()  # the shutdown writes the minute still open
    rows = SqliteStore(server.storage).audit_entries("auth_failed")
    total = sum(int(row["detail"]["count"]) for row in rows)  # type: ignore[index]
    assert total >= FLOOD
    assert len(rows) <= 6, rows  # one per source (all from 127.0.0.1) and minute
    assert all(row["actor"] == "client:127.0.0.1" for row in rows)
    assert "1.2.826.0.1.3680043.15." not in repr(rows)
