"""Orthanc as the PACS: it sends a study to our listener, our SR and overlay come back to it."""

from __future__ import annotations

import io
import urllib.request
from collections.abc import Iterator

import pydicom
import pytest

from diagnostics.service.runtime import Runtime
from diagnostics.service.settings import ServiceSettings
from tests.helpers.pacs import Orthanc
from tests.helpers.synth import SynthStudies
from tests.helpers.wait import wait_for


@pytest.fixture(scope="module")
def service(orthanc: Orthanc, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    config = ServiceSettings(
        storage=tmp_path_factory.mktemp("orthanc-store"),
        dicom_port=0,
        allow_ae=("ORTHANC",),
        results_to=(f"ORTHANC@127.0.0.1:{orthanc.dicom_port}",),
        stable_seconds=1.0,
        insecure_dev=True,
    )
    runtime = Runtime(config)
    runtime.start()
    assert runtime.listener is not None
    orthanc.put(
        "/modalities/diagnostics",
        {"AET": "DIAGNOSTICS", "Host": "127.0.0.1", "Port": runtime.listener.port},
    )
    yield runtime
    runtime.stop()


def test_round_trip_through_orthanc(
    orthanc: Orthanc, service: Runtime, synth_studies: SynthStudies
) -> None:
    folder, truths = synth_studies
    truth = truths[5]
    uploaded = orthanc.post("/instances", (folder / truth.file).read_bytes(), "application/dicom")
    study_id = uploaded["ParentStudy"]
    # Orthanc itself sends the study to our listener (C-STORE SCU).
    orthanc.post("/modalities/diagnostics/store", {"Resources": [study_id], "Synchronous": True})
    state = wait_for(
        lambda: (
            (s := service.store.study_state(truth.study_instance_uid))
            and s["state"] == "done"
            and s
        ),
        60,
        "the study to be screened",
    )
    latest = service.store.latest_result(truth.study_instance_uid)
    assert latest is not None and latest[1].status == "analyzed" and state["version"] == 1

    # The SR and the overlay arrive in Orthanc, in the same study.
    def arrived() -> list[dict[str, object]]:
        instances = orthanc.get(f"/studies/{study_id}/instances")
        return instances if len(instances) >= 4 else []  # image + SR + overlay + presentation state

    instances = wait_for(arrived, 60, "results in Orthanc")
    by_class = {}
    for instance in instances:
        tags = orthanc.get(f"/instances/{instance['ID']}/simplified-tags")
        by_class[tags["SOPClassUID"]] = instance["ID"]
        assert tags["StudyInstanceUID"] == truth.study_instance_uid
    sr_class = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR
    assert sr_class in by_class, sorted(by_class)
    with urllib.request.urlopen(f"{orthanc.http}/instances/{by_class[sr_class]}/file") as r:
        sr = pydicom.dcmread(io.BytesIO(r.read()))
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0]
    referenced = evidence.ReferencedSOPSequence[0].ReferencedSOPInstanceUID
    original = pydicom.dcmread(folder / truth.file, stop_before_pixels=True)
    assert referenced == original.SOPInstanceUID
    # Orthanc may hold the last file a moment before our outbox has recorded the answer.
    wait_for(
        lambda: (
            len(service.store.audit_entries("result_sent")) >= 3
            and service.store.counts()["outbox_pending"] == 0
        ),
        30,
        "the outbox to record every delivery",
    )
