"""Keep patient data out of the service's logs.

Our own log lines carry only UIDs, our identifiers and error texts, which never quote header
values. pydicom's validation messages, however, quote the offending value (`Invalid value for
VR DA: '19700101'`), and that value can be a birth date or a patient's name; the DICOM reader
passes such messages on as "tolerated DICOM defect" warnings. The service therefore redacts
quoted values from those loggers and silences pydicom's duplicate `warnings`.
"""

from __future__ import annotations

import logging
import re
import warnings

_QUOTED = re.compile(r"'[^'\n]*'|\"[^\"\n]*\"")
REDACTED = "'<redacted>'"
LOGGERS = ("pydicom", "diagnostics.dicom.reader")
"""pydicom logs through its one `pydicom` logger; a filter on a logger sees only its own records."""


class RedactQuotedValues(logging.Filter):
    """Replaces every quoted string in a record's message with `'<redacted>'`."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = _QUOTED.sub(REDACTED, message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


def keep_patient_data_out_of_logs() -> None:
    """Install the redaction on the loggers that may quote DICOM values (idempotent)."""
    for name in LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactQuotedValues) for f in logger.filters):
            logger.addFilter(RedactQuotedValues())
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
