"""Hostile uploads at the HTTP doors (STOW-RS and /v1/screen) on a real Runtime: deflate bombs
refused by their inflated size, conflicting copies of an instance answered 409."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pydicom
import pytest

from diagnostics.api.endpoints import screen_upload, store_upload
from diagnostics.api.stow import FAILURE_DUPLICATE_SOP_INSTANCE, FAILURE_OUT_OF_RESOURCES
from diagnostics.service.runtime import Runtime
from diagnostics.service.settings import ServiceSettings
from diagnostics.synth import SynthConfig, generate
from tests.dicom.bombs import deflate_bomb, image_dataset, part10

DICOM = "application/dicom"
ACTOR = "token:abcdef"
MiB = 1 << 20


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = tmp_path_factory.mktemp("hostile-synth")
    generate(out, 2, 11, SynthConfig(rows=256, columns=256, spacing_mm=409.6 / 256))
    return sorted(out.glob("study-*/*.dcm"))


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    config = ServiceSettings(
        storage=tmp_path_factory.mktemp("hostile-http"),
        stable_seconds=3600,
        max_instance_bytes=8 * MiB,
    )
    runtime = Runtime(config)
    runtime.start()
    yield runtime
    runtime.stop()


def _failed_items(body: object) -> list[dict[str, dict[str, list[object]]]]:
    assert isinstance(body, dict)
    return list(body["00081198"]["Value"])


def _changed(path: Path) -> bytes:
    """The same SOP Instance UID and study, other pixels."""
    ds = pydicom.dcmread(path)
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        ds.decompress(generate_instance_uid=False)
    pixels = ds.pixel_array.copy()
    pixels[:8, :8] += 1
    ds.PixelData = pixels.astype(ds.pixel_array.dtype).tobytes()
    out = io.BytesIO()
    ds.save_as(out)
    return out.getvalue()


def test_stow_refuses_a_deflate_bomb_and_still_names_it(runtime: Runtime) -> None:
    ds = image_dataset(32, 32)
    bomb = deflate_bomb(64 * MiB, ds)
    reply = store_upload(runtime, DICOM, bomb, ACTOR)
    assert reply.status == 409
    (item,) = _failed_items(reply.body)
    assert item["00081197"]["Value"] == [FAILURE_OUT_OF_RESOURCES]
    assert "inflates to more than" in str(item["00000902"]["Value"][0])
    assert item["00081155"]["Value"] == [ds.SOPInstanceUID]  # peeked without inflating it all
    assert runtime.store.counts()["instances"] == 0


def test_screen_refuses_a_deflate_bomb(runtime: Runtime) -> None:
    reply = screen_upload(runtime, DICOM, deflate_bomb(64 * MiB), ACTOR)
    assert reply.status == 422
    assert "inflates to more than" in str(reply.body)
    assert runtime.store.counts()["instances"] == 0


def test_conflicting_copy_is_409_and_identical_resend_idempotent(
    runtime: Runtime, files: list[Path]
) -> None:
    first, second = files[0], files[1]
    assert store_upload(runtime, DICOM, first.read_bytes(), ACTOR).status == 200
    stow = store_upload(runtime, DICOM, _changed(first), ACTOR)
    assert stow.status == 409
    (item,) = _failed_items(stow.body)
    assert item["00081197"]["Value"] == [FAILURE_DUPLICATE_SOP_INSTANCE]
    assert "different content" in str(item["00000902"]["Value"][0])
    again = store_upload(runtime, DICOM, first.read_bytes(), ACTOR)
    assert again.status == 200  # identical: accepted, stored once
    study = str(pydicom.dcmread(first, stop_before_pixels=True).StudyInstanceUID)
    assert len(runtime.store.instances_of(study)) == 1

    assert screen_upload(runtime, DICOM, second.read_bytes(), ACTOR).status == 200
    screen = screen_upload(runtime, DICOM, _changed(second), ACTOR)
    assert screen.status == 409
    assert isinstance(screen.body, dict) and screen.body["error"] == "DuplicateInstanceError"
    assert "different content" in str(screen.body["message"])


def test_study_budget_is_a_service_setting(tmp_path: Path) -> None:
    image = 64 * 64 * 4
    config = ServiceSettings(
        storage=tmp_path / "store", stable_seconds=3600, max_study_decoded_bytes=1 << 20
    )
    assert config.read_limits().max_study_decoded_bytes == 1 << 20
    runtime = Runtime(config)  # not started: storing needs no model
    study = pydicom.uid.generate_uid()
    pixels = np.zeros((64, 64), dtype=np.uint16)
    for _ in range((1 << 20) // image):
        data = part10(image_dataset(64, 64, study=study, pixels=pixels))
        assert runtime.receive_many([data], ACTOR)[0].error is None
    outcome = runtime.receive_many([part10(image_dataset(64, 64, study=study))], ACTOR)[0]
    assert outcome.error is not None and "per-study budget" in str(outcome.error)
