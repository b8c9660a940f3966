"""Keep patient data out of the service's logs.

Our own log lines carry only UIDs of accepted studies, our identifiers and error classes; a
refused instance is logged by its error class and the attributes at fault
(`diagnostics.dicom.header.refusal_category`), never by its message, which quotes the offending
header value (a malformed UID, a Photometric Interpretation) so the sender can fix it.

Other libraries are not so careful: pydicom's validation messages quote the value (`Invalid
value for VR DA: '19700101'`), which can be a birth date or a patient's name, and pynetdicom
logs exceptions raised while it decodes what a peer sent. So at service start
every handler of every logger gets one filter that redacts quoted values from each record's
message and from the message of any exception it carries (the traceback's frames stay), and
pydicom's duplicate `warnings` are silenced. The service's own handlers redact in their
formatters as well (`diagnostics.service.logs`), which see every record whatever filters ran.
"""

from __future__ import annotations

import logging
import traceback
import warnings

from diagnostics.service.logs import REDACTED as REDACTED
from diagnostics.service.logs import redact

LOGGERS = ("pydicom", "diagnostics.dicom.reader")
"""Loggers whose own filters redact too: a record logged while no handler is set up yet (a
library's early warning) is redacted before it reaches one added later."""


class RedactQuotedValues(logging.Filter):
    """Replaces every quoted string in a record's message, and its exception's, with
    `'<redacted>'`."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format: keep neither
            record.msg, record.args = "<a log message that could not be formatted>", None
            message = str(record.msg)
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and record.exc_info[1] is not None and not record.exc_text:
            kind, value, tb = record.exc_info
            frames = "".join(traceback.format_tb(tb))
            last = "".join(traceback.format_exception_only(kind, value))
            record.exc_text = f"Traceback (most recent call last):\n{frames}{redact(last)}".rstrip()
        return True


def keep_patient_data_out_of_logs() -> None:
    """Install the redaction on every handler and on `LOGGERS` (idempotent)."""
    manager = logging.Logger.manager
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [lg for lg in list(manager.loggerDict.values()) if isinstance(lg, logging.Logger)]
    for logger in loggers:
        for handler in logger.handlers:
            _add(handler)
    for name in LOGGERS:
        _add(logging.getLogger(name))
    warnings.filterwarnings("ignore", module=r"pydicom(\.|$)")
    try:
        from pynetdicom import _config as netdicom
    except ImportError:  # pragma: no cover - pynetdicom is a dependency
        return
    # Query identifiers (C-FIND) are patient data: the listener takes C-STORE only; never log them.
    netdicom.LOG_REQUEST_IDENTIFIERS = False
    netdicom.LOG_RESPONSE_IDENTIFIERS = False


def _add(target: logging.Handler | logging.Logger) -> None:
    if not any(isinstance(f, RedactQuotedValues) for f in target.filters):
        target.addFilter(RedactQuotedValues())
