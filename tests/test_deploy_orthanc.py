"""docs/deploy.md, section 6, with the real parts: Orthanc configured as the guide says, with
the routing script from `deploy/orthanc/`, sends a stable radiograph study to the service, and
the service's results come back into the same study in Orthanc, once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from diagnostics.constants import MANUFACTURER
from tests.helpers.pacs import Orthanc, start_orthanc
from tests.helpers.service import Server, start_service
from tests.helpers.synth import SynthFactory
from tests.helpers.wait import free_port, wait_for

pytestmark = pytest.mark.slow

ROUTING_SCRIPT = (
    Path(__file__).resolve().parents[1] / "deploy" / "orthanc" / "route-to-diagnostics.lua"
)
TOKEN = "deploy-test-token-0123456789"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Orthanc, Server]]:
    """The service and an Orthanc that routes to it, each knowing the other's address."""
    root = tmp_path_factory.mktemp("deploy-site")
    service_dicom, orthanc_dicom = free_port(), free_port()
    orthanc_config = {
        "DicomModalities": {"diagnostics": ["DIAGNOSTICS", "127.0.0.1", service_dicom]},
        "LuaScripts": [str(ROUTING_SCRIPT)],
        "StableAge": 2,
    }
    (root / "orthanc").mkdir()
    with start_orthanc(root / "orthanc", orthanc_config, dicom_port=orthanc_dicom) as orthanc:
        server = start_service(
            root,
            *("--allow-ae", orthanc.aet, "--results-to", f"ORTHANC@127.0.0.1:{orthanc_dicom}"),
            token=TOKEN,
            env={"DIAGNOSTICS_STABLE_SECONDS": "1"},
            dicom_port=service_dicom,
        )
        try:
            yield orthanc, server
        finally:
            server.stop()


def _series_manufacturers(orthanc: Orthanc, study_id: str) -> list[str]:
    study = orthanc.get(f"/studies/{study_id}")
    return [
        orthanc.get(f"/series/{s}")["MainDicomTags"].get("Manufacturer", "")
        for s in study["Series"]
    ]


def test_orthanc_routes_a_stable_study_and_gets_the_results_back_once(
    site: tuple[Orthanc, Server], synth_factory: SynthFactory
) -> None:
    orthanc, server = site
    made = synth_factory("deploy-study", 1, 515, 512)
    uploaded = orthanc.post("/instances", made.files[0].read_bytes(), "application/dicom")
    study_id = uploaded["ParentStudy"]
    study_uid = made.truths[0].study_instance_uid

    state = server.wait_for_result(study_uid, timeout=240)
    assert state["result"]["status"] == "analyzed"  # type: ignore[index]
    wait_for(
        lambda: MANUFACTURER in _series_manufacturers(orthanc, study_id),
        180,
        "the service's results to arrive in Orthanc's study",
    )
    # The results made the study stable again; the script must not send it back. Wait past
    # Orthanc's stable age and the service's stable time, then check there was one screening.
    time.sleep(8)
    assert server.get(f"/v1/studies/{study_uid}").json()["version"] == 1
    sends = [
        job
        for job in orthanc.get("/jobs?expand")
        if job["Type"] == "DicomModalityStore" and job["Content"].get("RemoteAet") == "DIAGNOSTICS"
    ]
    assert len(sends) == 1, sends
