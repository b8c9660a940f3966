"""Two service nodes on one PostgreSQL and one storage folder: studies arrive at both (STOW-RS
at one, C-STORE at the other), one node is killed (`kill -9`) mid-burst, and every
acknowledged study still ends with exactly one result: nothing acknowledged is lost, nothing
is recorded twice. Real parts only: two `diagnostics serve` processes, DCMTK storescu, a
throwaway PostgreSQL cluster."""

from __future__ import annotations

import contextlib
import threading
import uuid
from pathlib import Path

import pydicom
import pytest
import requests

from diagnostics.store import open_store
from tests.helpers.pacs import storescu
from tests.helpers.postgres import Cluster
from tests.helpers.service import Server, start_service
from tests.helpers.synth import SynthStudies
from tests.helpers.wait import free_port, wait_for

LEASE_S = 3.0
PER_NODE = 6
"""Studies sent to each node."""


def _studies(synth_studies: SynthStudies, folder: Path, count: int) -> list[Path]:
    source, truths = synth_studies
    folder.mkdir()
    out = []
    for i in range(count):
        ds = pydicom.dcmread(source / truths[i % len(truths)].file)
        ds.StudyInstanceUID = pydicom.uid.generate_uid()
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        path = folder / f"{i}.dcm"
        ds.save_as(path)
        out.append(path)
    return out


def _stow(server: Server, data: bytes) -> int | None:
    boundary = uuid.uuid4().hex
    body = f"\r\n--{boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode() + data
    body += f"\r\n--{boundary}--\r\n".encode()
    kind = f'multipart/related; type="application/dicom"; boundary={boundary}'
    try:
        response = server.post("/dicomweb/studies", data=body, headers={"Content-Type": kind})
    except requests.ConnectionError:  # the node was killed
        return None
    return response.status_code


def _study_uid(path: Path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).StudyInstanceUID)


@pytest.mark.slow
def test_a_node_killed_mid_burst_loses_nothing_and_nothing_is_screened_twice(
    tmp_path: Path, synth_studies: SynthStudies, postgres: Cluster
) -> None:
    url = postgres.new_database()
    storage = tmp_path / "shared-storage"
    env = {"DIAGNOSTICS_DATABASE_URL": url, "DIAGNOSTICS_LEASE_SECONDS": str(LEASE_S)}
    flags = ("--stable-seconds", "0.5")
    dicom_b = free_port()
    for node in ("a", "b"):
        (tmp_path / node).mkdir()
    a = start_service(tmp_path / "a", *flags, env=env, storage=storage)
    b = start_service(
        tmp_path / "b",
        *flags,
        "--allow-ae",
        "STORESCU",
        env=env,
        storage=storage,
        dicom_port=dicom_b,
    )
    files = _studies(synth_studies, tmp_path / "in", 2 * PER_NODE)
    to_a, to_b = files[:PER_NODE], files[PER_NODE:]
    acknowledged: list[str] = []
    stored_at_a = threading.Event()
    try:

        def send_to_a() -> None:
            for path in to_a:
                if _stow(a, path.read_bytes()) == 200:
                    acknowledged.append(_study_uid(path))
                    if len(acknowledged) >= PER_NODE // 2:
                        stored_at_a.set()
            stored_at_a.set()

        sender = threading.Thread(target=send_to_a)
        sender.start()
        stored_at_a.wait(120)
        a.kill()  # kill -9 mid-burst: its claims and its requests in flight die with it
        sender.join(120)
        sent = storescu(dicom_b, to_b)
        assert sent.returncode == 0, sent.stderr
        acknowledged += [_study_uid(p) for p in to_b]
        assert len(acknowledged) >= PER_NODE + PER_NODE // 2

        store = open_store(storage, database=url)
        try:

            def all_done() -> bool:
                return all(store.latest_result(uid) is not None for uid in acknowledged)

            wait_for(all_done, 240, "a result for every acknowledged study", poll=0.5)
            for uid in acknowledged:
                rows = store.connection().execute(  # type: ignore[attr-defined]
                    "SELECT COUNT(*) FROM results WHERE study_instance_uid = ?", (uid,)
                )
                assert rows.fetchone()[0] == 1, f"{uid}: screened more than once"
                state = store.study_state(uid)
                assert state is not None and state["state"] == "done" and state["version"] == 1
            assert store.verify_audit().problem is None
        finally:
            store.close()
    finally:
        with contextlib.suppress(Exception):
            a.kill()
        b.stop()
