"""Quoted DICOM values never reach the log, whichever of the two loggers carries them."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from diagnostics.api.privacy import LOGGERS, RedactQuotedValues, keep_patient_data_out_of_logs


@pytest.fixture(autouse=True)
def restore_loggers() -> Iterator[None]:
    """The redaction is process-wide; other tests must see the loggers as they were."""
    yield
    for name in LOGGERS:
        logger = logging.getLogger(name)
        for installed in [f for f in logger.filters if isinstance(f, RedactQuotedValues)]:
            logger.removeFilter(installed)


def test_quoted_values_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    keep_patient_data_out_of_logs()
    keep_patient_data_out_of_logs()  # idempotent
    # Other tests (the CLI in-process) may have raised pydicom's level: set both explicitly.
    caplog.set_level(logging.WARNING, logger="pydicom")
    caplog.set_level(logging.WARNING, logger="diagnostics.dicom.reader")
    with caplog.at_level(logging.WARNING):
        logging.getLogger("pydicom").warning("Invalid value for VR DA: '19700101'.")
        logging.getLogger("diagnostics.dicom.reader").warning(
            "%s: tolerated DICOM defect: %s", "item 1", 'Invalid value for VR PN: "DOE^JANE"'
        )
    text = caplog.text
    assert "19700101" not in text and "DOE^JANE" not in text
    assert text.count("'<redacted>'") == 2
    assert "tolerated DICOM defect" in text
