"""Names and values shared across layers, written once.

Only values that more than one module must agree on live here (a file name two layers read, the
manufacturer our DICOM outputs and the de-identifier both recognise).
"""

from __future__ import annotations

from pathlib import Path

MANUFACTURER = "radiology-diagnostics"
"""Manufacturer (0008,0070) of every DICOM object we create; the research export recognises it."""

DATABASE_FILE = "intake.sqlite3"
"""The embedded store's database, inside the storage folder."""

LEAD_LOCK_FILE = "lead.lock"
"""In the storage folder: the running service's lead process holds an exclusive `flock` on it
(`service/runtime.py`); restore refuses a folder whose lock is held."""

DEFAULT_AE_TITLE = "DIAGNOSTICS"
"""The service's own DICOM application entity title unless configured."""

DEFAULT_MIN_FREE_DISK = "1GiB"
"""The free-disk floor under which the service refuses new instances unless configured
(`--min-free-disk`): the settings' default and `serve --help` say the same."""

ENGINE_CHOICES = ("onnxruntime", "openvino", "auto")
"""The inference runtimes a user may name (`diagnostics.screening.engines`); here so that the
command line can offer them without importing the runtimes."""

BUNDLED_MODEL = Path(__file__).resolve().parent.parent / "models" / "cxr-demo"
"""The bundled model package, beside the `diagnostics` package in a source checkout; an installed
wheel does not carry it (give a model package's path instead)."""


def host_in_url(address: str) -> str:
    """An IP address as it goes before `:port` in a URL or a log line (IPv6 in brackets): the
    banner of `diagnostics serve` and the service's ready line say where it listens alike."""
    return f"[{address}]" if ":" in address else address
