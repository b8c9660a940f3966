"""The DICOM listener against DCMTK's echoscu and storescu, and the screening loop behind it."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest

from diagnostics.service.runtime import Runtime
from diagnostics.service.settings import ServiceSettings
from tests.helpers.pacs import storescu
from tests.helpers.synth import SynthStudies
from tests.helpers.wait import wait_for


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    config = ServiceSettings(
        storage=tmp_path_factory.mktemp("listener-store"),
        dicom_port=0,
        allow_ae=("STORESCU", "ECHOSCU"),
        stable_seconds=0.5,
        insecure_dev=True,
    )
    runtime = Runtime(config)
    runtime.start()
    yield runtime
    runtime.stop()


def _port(runtime: Runtime) -> str:
    assert runtime.listener is not None
    return str(runtime.listener.port)


def _dcmtk(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=60, check=False)


def test_echo_from_an_allowed_caller(runtime: Runtime) -> None:
    done = _dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", "DIAGNOSTICS", "127.0.0.1", _port(runtime))
    assert done.returncode == 0, done.stderr


def test_unknown_caller_is_rejected_and_audited(runtime: Runtime) -> None:
    done = _dcmtk("echoscu", "-aet", "STRANGER", "-aec", "DIAGNOSTICS", "127.0.0.1", _port(runtime))
    assert done.returncode != 0
    assert "Rejected" in done.stderr or "rejected" in done.stderr.lower(), done.stderr
    entries = wait_for(lambda: runtime.store.audit_entries("association_rejected"), 5, "audit")
    assert entries[-1]["actor"] == "dimse:STRANGER"


def test_stored_studies_are_screened_once(runtime: Runtime, synth_studies: SynthStudies) -> None:
    folder, truths = synth_studies
    files = [folder / t.file for t in truths[:3]]
    done = storescu(_port(runtime), files + files[:1])  # the first twice: one result, not two
    assert done.returncode == 0, done.stderr
    for truth in truths[:3]:
        state = wait_for(
            lambda t=truth: (
                (s := runtime.store.study_state(t.study_instance_uid))
                and s["state"] == "done"
                and s
            ),
            60,
            f"study {truth.study_instance_uid} to be screened",
        )
        assert state["version"] == 1 and state["instance_count"] == 1
        latest = runtime.store.latest_result(truth.study_instance_uid)
        assert latest is not None and latest[1].status == "analyzed"

    # The audit row follows the recorded result (claims.py): wait for it, then check that
    # no study was screened twice.
    def audited() -> list[str]:
        screened = runtime.store.audit_entries("study_screened")
        return [str(e["detail"]["study"]) for e in screened]  # type: ignore[index]

    wait_for(lambda: len(audited()) >= 3, 30, "three study_screened audit rows")
    time.sleep(1)  # a duplicate screening, if there were one, would be recorded by now
    uids = audited()
    assert sorted(uids) == sorted(t.study_instance_uid for t in truths[:3])


def test_unusable_instance_is_refused_with_a_reason(
    runtime: Runtime, synth_studies: SynthStudies, tmp_path: Path
) -> None:
    folder, truths = synth_studies
    ds = pydicom.dcmread(folder / truths[4].file)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    if "PixelData" in ds and ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress()
    ds.BitsStored = 20  # more bits stored than allocated: not a valid image
    bad = tmp_path / "bad.dcm"
    ds.save_as(bad)
    before = runtime.store.counts()["instances"]
    done = storescu(_port(runtime), [bad])
    assert done.returncode != 0  # storescu reports the failed store in its exit status
    assert runtime.store.counts()["instances"] == before
    refused = runtime.store.audit_entries("instance_refused")
    assert refused and "BitsStored" in str(refused[-1]["detail"])


# -- the called AE title ---------------------------------------------------------------------


def test_wrong_called_ae_is_rejected_with_the_standard_reason(
    runtime: Runtime, synth_studies: SynthStudies
) -> None:
    """A-ASSOCIATE-RJ, permanent, service user, reason 7: called AE title not recognised."""
    echo = _dcmtk("echoscu", "-d", "-aet", "ECHOSCU", "-aec", "WRONG", "127.0.0.1", _port(runtime))
    assert echo.returncode != 0
    text = (echo.stdout + echo.stderr).lower()
    assert "called ae title not recognized" in text or "reason: 7" in text, text
    entries = wait_for(
        lambda: [
            e
            for e in runtime.store.audit_entries("association_rejected")
            if e["detail"]["reason"] == "called AE title not recognised"  # type: ignore[index]
        ],
        5,
        "the audited rejection",
    )
    assert entries[-1]["actor"] == "dimse:ECHOSCU"
    assert "WRONG" not in str(entries[-1])  # nothing the peer sent but its calling AE title

    folder, truths = synth_studies
    before = runtime.store.counts()["instances"]
    store = _dcmtk(
        "storescu", "-aet", "STORESCU", "-aec", "WRONG", "-R", "127.0.0.1", _port(runtime),
        str(folder / truths[5].file),
    )  # fmt: skip
    assert store.returncode != 0
    assert "rejected" in (store.stdout + store.stderr).lower()
    assert runtime.store.counts()["instances"] == before
    # Our own title, as the sender is told: accepted.
    assert (
        _dcmtk(
            "echoscu", "-aet", "ECHOSCU", "-aec", "DIAGNOSTICS", "127.0.0.1", _port(runtime)
        ).returncode
        == 0
    )


def test_any_called_ae_when_configured(tmp_path: Path) -> None:
    """`--accept-any-called-ae`: for a PACS that cannot be told our title. The calling AE
    title is still checked."""
    from diagnostics.service.listener import DicomListener
    from diagnostics.store import open_store

    listener = DicomListener(
        open_store(tmp_path),
        ae_title="DIAGNOSTICS",
        port=0,
        allowed_callers=["ECHOSCU"],
        host="127.0.0.1",
        accept_any_called_ae=True,
    )
    listener.start()
    try:
        port = str(listener.port)
        assert (
            _dcmtk("echoscu", "-aet", "ECHOSCU", "-aec", "ANY", "127.0.0.1", port).returncode == 0
        )
        stranger = _dcmtk("echoscu", "-aet", "STRANGER", "-aec", "ANY", "127.0.0.1", port)
        assert stranger.returncode != 0
    finally:
        listener.stop()
