"""The real service with a pre-filled worklist, and headless Chromium (Debian's package, driven
by Playwright; `playwright install` is never needed)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pydicom
import pytest
import requests
from pydicom.encaps import encapsulate
from pydicom.uid import JPEG2000Lossless, generate_uid

from tests.helpers.service import Server, start_service
from tests.helpers.synth import SynthFactory
from tests.ui.prefilled import TOKEN, Prefilled

CHROMIUM = Path("/usr/bin/chromium")


def _variant(path: Path, **changes: object) -> bytes:
    """A copy of a synthetic study under new UIDs, with header changes."""
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for key, value in changes.items():
        setattr(ds, key, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _broken(path: Path) -> bytes:
    """In scope and stored, but its JPEG 2000 codestream is cut off: screening fails."""
    ds = pydicom.dcmread(path)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\x00" * 200])
    ds["PixelData"].VR = "OB"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


@pytest.fixture(scope="package")
def prefilled(
    tmp_path_factory: pytest.TempPathFactory, synth_factory: SynthFactory
) -> Iterator[Prefilled]:
    root = tmp_path_factory.mktemp("ui")
    # Seed 4: with the bundled model, one study urgent (consolidation), three flagged but
    # routine (nodule, cardiomegaly: on_flag routine), two without flags.
    files = sorted(synth_factory("ui-synth", 6, 4, 384).folder.glob("study-*/*.dcm"))
    env = {"DIAGNOSTICS_STABLE_SECONDS": "0.5"}
    server = start_service(root, "--workers", "1", token=TOKEN, env=env)
    try:
        flagged: list[str] = []
        routine: list[str] = []
        results: list[dict[str, object]] = []
        for path in files:
            result = _screen(server, path.read_bytes())
            results.append(result)
            assert result["status"] == "analyzed", result
            findings: list[dict[str, object]] = result["findings"]  # type: ignore[assignment]
            has_flags = any(f["flagged"] for f in findings)
            (flagged if has_flags else routine).append(str(result["study_instance_uid"]))
        assert flagged and len(routine) >= 2, "the set needs flagged and two unflagged studies"
        urgent = {str(r["study_instance_uid"]) for r in results if r["priority"] == "urgent"}
        assert urgent, "the synthetic set needs an urgent study (a consolidation)"
        assert urgent < set(flagged), "the set needs a flagged study left routine (a nodule)"
        flagged.sort(key=lambda uid: uid not in urgent)  # urgent ones first, stable otherwise
        ct = _screen(server, _variant(files[0], Modality="CT"))
        failed = _screen(server, _broken(files[1]))
        assert ct["status"] == "not_analyzed" and failed["status"] == "failed"
        yield Prefilled(
            server,
            flagged + routine,
            flagged,
            str(ct["study_instance_uid"]),
            str(failed["study_instance_uid"]),
        )
    finally:
        server.stop()


def _screen(server: Server, data: bytes) -> dict[str, object]:
    response = requests.post(
        server.url + "/v1/screen",
        data=data,
        headers={**server.auth, "Content-Type": "application/dicom"},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    return dict(response.json())


@pytest.fixture(scope="package")
def browser() -> Iterator[object]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: scripts/setup installs Debian's chromium package")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        yield browser
        browser.close()
