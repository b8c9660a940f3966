"""Hostile input at the DICOM door (DCMTK's storescu against the real listener) and at the
store: deflate bombs, short pixel data, conflicting copies of an instance, study budgets."""

from __future__ import annotations

import io
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from diagnostics.dicom import ReadLimits
from diagnostics.errors import (
    CorruptDicomError,
    DuplicateInstanceError,
    StoreError,
    TooLargeError,
)
from diagnostics.service.runtime import Runtime
from diagnostics.service.settings import ServiceSettings
from diagnostics.store.sqlite import SqliteStore
from tests.dicom.bombs import deflate_bomb, image_dataset, part10
from tests.helpers.pacs import storescu
from tests.helpers.synth import SynthStudies

MiB = 1 << 20


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    config = ServiceSettings(
        storage=tmp_path_factory.mktemp("hostile-store"),
        dicom_port=0,
        allow_ae=("STORESCU",),
        stable_seconds=3600,  # nothing is screened: these tests are about what is acknowledged
        insecure_dev=True,
        max_instance_bytes=8 * MiB,
    )
    runtime = Runtime(config)
    runtime.start()
    yield runtime
    runtime.stop()


def _port(runtime: Runtime) -> str:
    assert runtime.listener is not None
    return str(runtime.listener.port)


def _storescu_verbose(
    runtime: Runtime, path: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    """storescu with the status it was answered printed (-v)."""
    command = ["storescu", "-v", "-aet", "STORESCU", "-aec", "DIAGNOSTICS", *options]
    command += ["127.0.0.1", _port(runtime), str(path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def _last_refusal(runtime: Runtime) -> str:
    refused = runtime.store.audit_entries("instance_refused")
    assert refused, "nothing was audited as refused"
    return str(refused[-1]["detail"])


def _short_pixel_file(synth_studies: SynthStudies, tmp_path: Path) -> Path:
    folder, truths = synth_studies
    ds = pydicom.dcmread(folder / truths[2].file)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress(generate_instance_uid=False)
    ds.PixelData = ds.PixelData[: len(ds.PixelData) // 2]
    path = tmp_path / "short.dcm"
    ds.save_as(path)
    return path


def test_deflate_bomb_over_c_store_is_refused_by_its_inflated_size(
    runtime: Runtime, tmp_path: Path
) -> None:
    path = tmp_path / "bomb.dcm"
    path.write_bytes(deflate_bomb(64 * MiB))  # 8 MiB limit; storescu re-deflates it to send
    assert path.stat().st_size < 200_000
    before = runtime.store.counts()["instances"]
    done = _storescu_verbose(runtime, path, "-xd")
    assert done.returncode != 0, done.stderr
    assert runtime.store.counts()["instances"] == before
    # Audited by error class, never by the refused header's values (docs/architecture.md).
    assert "TooLargeError" in _last_refusal(runtime)


def test_short_pixel_data_is_refused_at_c_store_without_a_server_path(
    runtime: Runtime, synth_studies: SynthStudies, tmp_path: Path
) -> None:
    path = _short_pixel_file(synth_studies, tmp_path)
    before = runtime.store.counts()["instances"]
    done = storescu(_port(runtime), [path])
    assert done.returncode != 0
    assert runtime.store.counts()["instances"] == before
    reason = _last_refusal(runtime)
    assert "CorruptDicomError" in reason
    assert str(runtime.store.root) not in reason


def test_conflicting_copy_over_c_store_is_refused_and_identical_resend_accepted(
    runtime: Runtime, synth_studies: SynthStudies, tmp_path: Path
) -> None:
    folder, truths = synth_studies
    original = folder / truths[3].file
    assert storescu(_port(runtime), [original]).returncode == 0
    (stored_path,) = [p for _, p in runtime.store.instances_of(truths[3].study_instance_uid)]
    stored = stored_path.read_bytes()
    ds = pydicom.dcmread(original)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress(generate_instance_uid=False)
    pixels = ds.pixel_array.copy()
    pixels[:16, :16] += 1  # a different image under the same SOP Instance UID
    ds.PixelData = pixels.astype(ds.pixel_array.dtype).tobytes()
    changed = tmp_path / "changed.dcm"
    ds.save_as(changed)
    done = _storescu_verbose(runtime, changed)
    assert done.returncode != 0
    assert "status: 0x111" in done.stderr.lower(), done.stderr  # Duplicate SOP Instance
    assert "DuplicateInstanceError" in _last_refusal(runtime)
    assert stored_path.read_bytes() == stored  # the first copy is kept as it was
    assert storescu(_port(runtime), [original]).returncode == 0  # identical: idempotent
    assert len(runtime.store.instances_of(truths[3].study_instance_uid)) == 1


def test_store_refuses_short_pixel_data_and_stores_nothing(
    tmp_path: Path, synth_studies: SynthStudies
) -> None:
    store = SqliteStore(tmp_path / "store")
    data = _short_pixel_file(synth_studies, tmp_path).read_bytes()
    with pytest.raises(CorruptDicomError, match="truncated"):
        store.receive(data, "test")
    assert store.counts()["instances"] == 0 and not list(store.instances_dir.iterdir())


def test_identical_resend_through_another_door_is_idempotent(
    tmp_path: Path, synth_studies: SynthStudies
) -> None:
    """Different file meta (another implementation wrote it), same dataset: the same instance."""
    folder, truths = synth_studies
    store = SqliteStore(tmp_path / "store")
    data = (folder / truths[0].file).read_bytes()
    store.receive(data, "http")
    ds = pydicom.dcmread(folder / truths[0].file)
    ds.file_meta.ImplementationVersionName = "OTHER_SCU"
    rewritten = tmp_path / "rewritten.dcm"
    ds.save_as(rewritten)
    assert rewritten.read_bytes() != data
    assert store.receive(rewritten.read_bytes(), "dimse:PACS").duplicate


def test_study_budget_refuses_the_instance_that_would_pass_it(tmp_path: Path) -> None:
    image = 256 * 256 * 4  # one decoded float32 image
    store = SqliteStore(tmp_path / "store", limits=ReadLimits(max_study_decoded_bytes=3 * image))
    study = pydicom.uid.generate_uid()
    for _ in range(3):
        ds = image_dataset(256, 256, study=study)
        store.receive(part10(ds), "test")
    with pytest.raises(TooLargeError, match="per-study budget of 786,432"):
        store.receive(part10(image_dataset(256, 256, study=study)), "test")
    assert len(store.instances_of(study)) == 3
    store.receive(part10(image_dataset(256, 256)), "test")  # another study: its own budget


def test_conflicting_copy_is_refused_by_the_store(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store")
    ds = image_dataset(64, 64)
    store.receive(part10(ds), "test")
    ds.PixelData = np.zeros((64, 64), dtype=np.uint16).tobytes()
    with pytest.raises(DuplicateInstanceError, match="different content"):
        store.receive(part10(ds), "test")


def test_failed_reason_names_no_server_path(runtime: Runtime, synth_studies: SynthStudies) -> None:
    """An instance accepted at intake whose codestream fails to decode at screening: the
    recorded `failed` reason says why without the storage folder."""
    folder, truths = synth_studies
    ds = pydicom.dcmread(folder / truths[5].file)
    ds.StudyInstanceUID = pydicom.uid.generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    ds.file_meta.TransferSyntaxUID = pydicom.uid.JPEG2000Lossless
    ds.PixelData = pydicom.encaps.encapsulate([b"\xff\x4f\xff\x51" + bytes(200)])
    ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    received = runtime.store.receive(buffer.getvalue(), "test")
    result = runtime.screen_now(received.study_instance_uid)
    assert result is not None and result.status == "failed"
    text = result.to_json()
    assert "truncated" in text  # the reason is still there ...
    assert str(runtime.store.root) not in text  # ... without where the server keeps the file


def test_storage_failure_reason_names_no_server_path(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store")
    store.incoming_dir.rmdir()
    store.incoming_dir.write_bytes(b"")  # writing under it now fails: not a directory
    with pytest.raises(StoreError) as caught:
        store.receive(part10(image_dataset(32, 32)), "test")
    assert "could not write the instance to storage: Not a directory" in str(caught.value)
    assert str(tmp_path) not in str(caught.value)
