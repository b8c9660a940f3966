"""A PACS for tests: Orthanc on loopback, and DCMTK's storescu as a sending modality."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.wait import free_port, wait_for

DICOMWEB_PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")


@dataclass
class Orthanc:
    http: str
    dicom_port: int
    aet: str = "ORTHANC"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.http + path, timeout=10) as response:
            return json.loads(response.read())

    def post(
        self, path: str, body: bytes | dict[str, Any], content_type: str = "application/json"
    ) -> Any:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        request = urllib.request.Request(
            self.http + path, data=data, method="POST", headers={"Content-Type": content_type}
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.loads(response.read() or b"null")

    def put(self, path: str, body: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.http + path,
            data=json.dumps(body).encode(),
            method="PUT",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(request, timeout=10).close()


@contextmanager
def start_orthanc(
    folder: Path, extra: dict[str, Any] | None = None, *, dicom_port: int | None = None
) -> Iterator[Orthanc]:
    """Orthanc (Debian package) with DICOMweb, on loopback, keeping its files in `folder`;
    `extra` adds to or replaces its configuration (modalities, Lua scripts)."""
    binary = shutil.which("Orthanc") or shutil.which("Orthanc", path="/usr/sbin")
    if binary is None:
        pytest.fail("Orthanc is missing: scripts/setup installs orthanc and orthanc-dicomweb")
    http_port, dicom_port = free_port(), dicom_port or free_port()
    config: dict[str, Any] = {
        "Name": "test-pacs",
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "HttpPort": http_port,
        "DicomPort": dicom_port,
        "DicomAet": "ORTHANC",
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "DicomCheckCalledAet": False,
        "DicomModalities": {},
        "Plugins": [str(DICOMWEB_PLUGIN)] if DICOMWEB_PLUGIN.exists() else [],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
        "StableAge": 1,
        **(extra or {}),
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = (folder / "orthanc.log").open("w")
    process = subprocess.Popen(
        [binary, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT
    )
    server = Orthanc(f"http://127.0.0.1:{http_port}", dicom_port)
    try:
        wait_for(lambda: _alive(server), 30, "Orthanc to start")
        yield server
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def _alive(server: Orthanc) -> bool:
    try:
        server.get("/system")
    except OSError:
        return False
    return True


_STORESCU_OPTION = {
    "1.2.840.10008.1.2.5": "-xr",  # RLE Lossless
    "1.2.840.10008.1.2.4.90": "-xv",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.80": "-xt",  # JPEG-LS lossless
    "1.2.840.10008.1.2.4.70": "-xs",  # JPEG lossless SV1
    "1.2.840.10008.1.2.4.91": "-xw",  # JPEG 2000 (lossy allowed)
    "1.2.840.10008.1.2.4.50": "-xy",  # JPEG baseline
    "1.2.840.10008.1.2.1.99": "-xd",  # deflated explicit VR little endian
}


def storescu(
    port: int | str, files: list[Path], aet: str = "STORESCU"
) -> subprocess.CompletedProcess[str]:
    """Send files with DCMTK storescu, one association per transfer syntax (storescu proposes
    a compressed syntax only when told which)."""
    import pydicom

    groups: dict[str, list[str]] = {}
    for path in files:
        syntax = str(pydicom.dcmread(path, stop_before_pixels=True).file_meta.TransferSyntaxUID)
        groups.setdefault(_STORESCU_OPTION.get(syntax, "-x="), []).append(str(path))
    result = None
    for option, paths in groups.items():
        command = [
            "storescu",
            "-aet",
            aet,
            "-aec",
            "DIAGNOSTICS",
            option,
            "-R",
            "127.0.0.1",
            str(port),
        ]
        result = subprocess.run(
            command + paths, capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode != 0:
            return result
    assert result is not None
    return result
