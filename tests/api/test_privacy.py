"""Quoted DICOM values never reach the log, whichever logger carries them; refusals are logged
by category."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from diagnostics.api.privacy import LOGGERS, RedactQuotedValues, keep_patient_data_out_of_logs
from diagnostics.dicom.header import describe_tag, refusal_category
from diagnostics.errors import CorruptDicomError, UnsupportedDicomError


@pytest.fixture(autouse=True)
def restore_loggers() -> Iterator[None]:
    """The redaction is process-wide; other tests must see the loggers as they were."""
    yield
    loggers = [logging.getLogger(), *(logging.getLogger(name) for name in LOGGERS)]
    loggers += [
        lg for lg in logging.Logger.manager.loggerDict.values() if isinstance(lg, logging.Logger)
    ]
    for target in [*loggers, *(h for lg in loggers for h in lg.handlers)]:
        for installed in [f for f in target.filters if isinstance(f, RedactQuotedValues)]:
            target.removeFilter(installed)


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


def test_every_handler_redacts_third_party_records_and_exception_messages() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    root = logging.getLogger()
    root.handlers.insert(0, handler)  # first: a CLI run's filter strips tracebacks from records
    # Another test in this process may have quietened pynetdicom (the CLI does): this test is
    # about redaction, so the probe's records must reach the root handler whatever ran before.
    parent, netdicom = logging.getLogger("pynetdicom"), logging.getLogger("pynetdicom.probe")
    saved = (parent.level, parent.propagate, parent.disabled, netdicom.level)
    parent.setLevel(logging.DEBUG)
    parent.propagate, parent.disabled = True, False
    netdicom.setLevel(logging.DEBUG)
    try:
        keep_patient_data_out_of_logs()  # after the handler exists, as at service start
        netdicom.warning("Affected SOP Instance UID 'DOE^JOHN^1923' is invalid")
        name = "ROE^RICHARD"
        try:
            raise ValueError(f"Invalid value for VR PN: {name!r}")  # frames show this line
        except ValueError:
            netdicom.exception("decoding the dataset failed")
    finally:
        root.removeHandler(handler)
        parent.setLevel(saved[0])
        parent.propagate, parent.disabled = saved[1], saved[2]
        netdicom.setLevel(saved[3])
    text = stream.getvalue()
    assert "DOE^JOHN" not in text and "ROE^RICHARD" not in text
    assert "Affected SOP Instance UID '<redacted>' is invalid" in text
    assert "Traceback (most recent call last)" in text and "test_privacy.py" in text  # frames stay
    assert "ValueError: Invalid value for VR PN: '<redacted>'" in text


def test_a_refusal_is_described_by_its_class_and_the_attributes_at_fault() -> None:
    error = CorruptDicomError(
        f"{describe_tag('StudyInstanceUID')} is not a valid UID (characters other than digits "
        "and dots): 'SMITH^JOHN (0010,0010)'"
    )
    assert refusal_category(error) == "CorruptDicomError: StudyInstanceUID"
    error = UnsupportedDicomError(
        f"{describe_tag('PhotometricInterpretation')} 'DOE' is not supported"
    )
    assert refusal_category(error) == "UnsupportedDicomError: PhotometricInterpretation"
    assert refusal_category(CorruptDicomError("the data is truncated")) == "CorruptDicomError"
