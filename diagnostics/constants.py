"""Names and values shared across layers, written once.

Only values that more than one module must agree on live here (a file name two layers read, the
manufacturer our DICOM outputs and the de-identifier both recognise).
"""

from __future__ import annotations

MANUFACTURER = "radiology-diagnostics"
"""Manufacturer (0008,0070) of every DICOM object we create; the research export recognises it."""

DATABASE_FILE = "intake.sqlite3"
"""The embedded store's database, inside the storage folder."""

DEFAULT_AE_TITLE = "DIAGNOSTICS"
"""The service's own DICOM application entity title unless configured."""
