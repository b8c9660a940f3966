"""The service's log: level, text or JSON lines, a rotated file, and no patient data.

`diagnostics serve` runs the HTTP side in a `bentoml serve` subprocess whose workers (and the
DICOM listener and background loops in them) configure logging themselves (BentoML's
`configure_server_logging`: its own handler on stdout, root at WARNING). So the log is built
in two places:

- Every server process (`configure_process_logging`, called when the service module loads,
  after BentoML's own set-up) replaces those handlers with one on stderr that writes our format
  at our level, with every record's quoted values redacted in the formatter.
- `diagnostics serve` reads that output through a pipe (`relay`) and is the only writer of
  the log file: size-based rotation (`RotatingFileHandler`) is safe with one writer, however
  many worker processes there are; with `--log-max-bytes 0` the file is reopened when it is
  moved (`WatchedFileHandler`), for logrotate. A line that is not one of ours (BentoML's
  arbiter, a traceback printed by a dying interpreter) is redacted and, in JSON mode, wrapped
  in a record of its own, so every line of a JSON log parses.

Study log lines carry a correlation id derived from the Study Instance UID (`correlation_id`):
the listener, the screening worker and the outbox compute the same id in any process.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import logging.handlers
import re
import sys
import threading
import traceback
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal
from urllib.parse import urlsplit

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR"]
LogFormat = Literal["text", "json"]

THIRD_PARTY_LOGGERS = (
    "pydicom",
    "highdicom",
    "pynetdicom",
    "onnxruntime",
    "monai",
    "PIL",
    "torch",
    "py.warnings",
)
"""Libraries that log (and print tracebacks of) failures this library already reports in its
own words: heard at WARNING and above unless the level is DEBUG (pynetdicom alone logs a dozen
INFO lines per association)."""
FRAMEWORK_LOGGERS = ("bentoml", "uvicorn", "uvicorn.error", "uvicorn.access", "circus")
"""Loggers BentoML gives handlers of their own: those go, and their records reach ours."""
RAW_PATH_LOGGERS = ("uvicorn.access", "bentoml.access")
"""Access logs naming each request by its raw path (Study Instance UIDs, probed paths): never
at INFO; `diagnostics.access` logs requests by route template instead."""
OUTPUT_LOGGER = "diagnostics.output"
"""The logger name of a server output line that was not one of our records."""

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
"""A quoted value, over line breaks too: a planted value with a newline is still one value."""
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
"""Characters that break or disguise a line of text (a tab does neither)."""
REDACTED = "'<redacted>'"
_LEVEL_WORD = re.compile(r"\b(DEBUG|INFO|WARNING|WARN|ERROR|CRITICAL)\b")
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    # BentoML's trace filter decorates records it sees with these.
    "levelname_bracketed",
    "component",
    "trace_msg",
    "request_id",
    "service_name",
}


def redact(text: str) -> str:
    """`text` with every quoted string replaced by `'<redacted>'`."""
    return _QUOTED.sub(REDACTED, text)


def escape(text: str) -> str:
    """`text` on one line: line breaks and other control characters as escapes (`\\n`,
    `\\x1b`), so a peer's text (a FHIR or STOW server's answer in an exception) cannot
    forge log lines of its own in the text log, which the relay passes through as lines."""
    return _CONTROL.sub(_escaped, text)


def _escaped(found: re.Match[str]) -> str:
    char = found[0]
    named = {"\n": "\\n", "\r": "\\r"}
    return named.get(char) or (
        f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}"
    )


_STUDY: contextvars.ContextVar[str | None] = contextvars.ContextVar("log_study", default=None)
"""The study this thread is working on: its correlation id goes on every line this thread logs
meanwhile, a library's included (not those of threads it starts, such as pynetdicom's
association threads: those lines are next to ours, which name the study)."""


def enter_study(study_instance_uid: str) -> contextvars.Token[str | None]:
    """Lines logged from here on in this thread (until `leave_study`) are about this study."""
    return _STUDY.set(study_instance_uid)


def leave_study(token: contextvars.Token[str | None]) -> None:
    _STUDY.reset(token)


@contextmanager
def about_study(study_instance_uid: str) -> Iterator[None]:
    token = enter_study(study_instance_uid)
    try:
        yield
    finally:
        leave_study(token)


def correlation_id(study_instance_uid: str) -> str:
    """A short id for every log line about one study, the same in every process."""
    return hashlib.sha256(study_instance_uid.encode()).hexdigest()[:10]


def study_fields(study_instance_uid: str, event: str, **fields: object) -> dict[str, object]:
    """`extra=` of a log line about a study: the event, its UID and correlation id, `fields`."""
    return {
        "event": event,
        "study_instance_uid": study_instance_uid,
        "correlation_id": correlation_id(study_instance_uid),
        **fields,
    }


def log_stored(
    logger: logging.Logger, sop_instance_uid: str, study_instance_uid: str, source: str
) -> None:
    """The one line per stored instance, whichever door it came in by (UIDs only)."""
    logger.info(
        "instance %s of study %s stored from %s",
        sop_instance_uid,
        study_instance_uid,
        source,
        extra=study_fields(
            study_instance_uid, "instance_stored", sop_instance_uid=sop_instance_uid, source=source
        ),
    )


def destination_label(destination: str) -> str:
    """A destination as logged: a URL without credentials in it (`user:password@`)."""
    parts = urlsplit(destination.removeprefix("fhir+"))
    if parts.scheme and parts.netloc and "@" in parts.netloc:
        host = parts.netloc.rsplit("@", 1)[1]
        return destination.replace(parts.netloc, host, 1)
    return destination


def _message(record: logging.LogRecord, one_line: bool = False) -> str:
    """The redacted message; `one_line` (the text form) escapes line breaks first."""
    try:
        message = record.getMessage()
        return redact(escape(message) if one_line else message)
    except (TypeError, ValueError):  # arguments that do not fit the format: keep neither
        return "<a log message that could not be formatted>"


def _exception(record: logging.LogRecord, one_line: bool = False) -> str | None:
    """The record's traceback with the exception's message redacted (the frames, the code's
    own text, stay); `one_line` (the text form) keeps that message on its one line."""
    if record.exc_info and record.exc_info[1] is not None:
        kind, value, tb = record.exc_info
        frames = "".join(traceback.format_tb(tb))
        last = "".join(traceback.format_exception_only(kind, value)).rstrip("\n")
        last = redact(escape(last) if one_line else last)
        return f"Traceback (most recent call last):\n{frames}{last}".rstrip()
    if not record.exc_text:
        return None
    return redact(escape(record.exc_text) if one_line else record.exc_text)


def _fields(record: logging.LogRecord) -> dict[str, object]:
    """The event's fields: what the caller gave in `extra=` (string values redacted)."""
    out: dict[str, object] = {}
    for key, value in record.__dict__.items():
        if key in _STANDARD or key.startswith("_") or key == "preformatted":
            continue
        out[key] = redact(value) if isinstance(value, str) else value
    return out


def _correlation(record: logging.LogRecord) -> str | None:
    """The record's correlation id: given in `extra=`, or that of the study being worked on."""
    given = getattr(record, "correlation_id", None)
    if isinstance(given, str):
        return given
    study = _STUDY.get()
    return correlation_id(study) if study else None


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TextFormatter(logging.Formatter):
    """`<time UTC> <LEVEL> <logger>: <message> [study <id>]`, redacted; tracebacks optional.

    It formats a copy: a shared record is never changed for the other handlers.
    """

    def __init__(self, tracebacks: bool = True) -> None:
        super().__init__()
        self.tracebacks = tracebacks

    def format(self, record: logging.LogRecord) -> str:
        preformatted = getattr(record, "preformatted", None)
        if isinstance(preformatted, str):
            return preformatted
        line = f"{_time(record)} {record.levelname} {escape(record.name)}: "
        line += _message(record, one_line=True)
        study = _correlation(record)
        if study:
            line += f" [study {study}]"
        if self.tracebacks:
            trace = _exception(record, one_line=True)
            if trace:
                line += "\n" + trace
            if record.stack_info:
                line += "\n" + record.stack_info
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (ISO 8601, UTC), level, logger, message, the event's
    fields (`extra=`), and the redacted traceback as `exception`."""

    def format(self, record: logging.LogRecord) -> str:
        preformatted = getattr(record, "preformatted", None)
        if isinstance(preformatted, str):
            return preformatted
        out: dict[str, object] = {
            "time": _time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
        }
        for key, value in _fields(record).items():
            out.setdefault(key, value)
        study = _correlation(record)
        if study:
            out.setdefault("correlation_id", study)
        trace = _exception(record)
        if trace:
            out["exception"] = trace
        return json.dumps(out, default=str, ensure_ascii=False)


def formatter(log_format: LogFormat) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


def configure_process_logging(level: LogLevel, log_format: LogFormat, stream: IO[str]) -> None:
    """This process logs at `level` in `log_format` to `stream` alone, every logger included
    (BentoML's, uvicorn's and circus' own handlers removed)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter(log_format))
    _install(handler, level)


def _install(handler: logging.Handler, level: LogLevel, *more: logging.Handler) -> None:
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    for new in (handler, *more):
        root.addHandler(new)
    root.setLevel(level)
    for name in FRAMEWORK_LOGGERS:
        framework = logging.getLogger(name)
        for old in list(framework.handlers):
            framework.removeHandler(old)
        framework.propagate = True
        framework.disabled = False
    quiet = logging.DEBUG if level == "DEBUG" else max(logging.WARNING, logging.getLevelName(level))
    for name in THIRD_PARTY_LOGGERS:
        logging.getLogger(name).setLevel(quiet)
    for name in RAW_PATH_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.getLogger("bentoml").setLevel(level)
    logging.getLogger("diagnostics").setLevel(level)
    logging.captureWarnings(True)
    # pydicom reports a header value it repaired (a wrong character set, an over-long name) to
    # its logger, heard above, and again as a warning: only the duplicate goes. Set here, once
    # per process, not per value on intake threads (`diagnostics.dicom.patient`).
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom\.(charset|valuerep)$")


def file_handler(path: Path, max_bytes: int, backups: int) -> logging.Handler:
    """Rotated at `max_bytes` keeping `backups` files, or (`max_bytes` 0) reopened when
    logrotate moves it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if max_bytes > 0:
        return logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
    return logging.handlers.WatchedFileHandler(path, encoding="utf-8")


def configure_sink(
    level: LogLevel,
    log_format: LogFormat,
    console: IO[str],
    log_file: Path | None = None,
    max_bytes: int = 0,
    backups: int = 0,
) -> list[logging.Handler]:
    """`diagnostics serve`'s own logging: to `console` and, when given, the log file; returns
    the handlers, which `relay` writes the server's lines to."""
    handlers: list[logging.Handler] = [logging.StreamHandler(console)]
    if log_file is not None:
        handlers.append(file_handler(log_file, max_bytes, backups))
    for handler in handlers:
        handler.setFormatter(formatter(log_format))
    _install(handlers[0], level, *handlers[1:])
    return handlers


def relay(
    lines: Iterable[bytes],
    handlers: Sequence[logging.Handler],
    level: LogLevel,
    log_format: LogFormat,
) -> None:
    """Write each server output line to `handlers`: our records as they are, any other line
    redacted (and in JSON mode wrapped), at the level its text names (WARNING if none)."""
    threshold = logging.getLevelName(level)
    previous: int | None = None
    for raw in lines:
        text = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not text.strip():
            continue
        record = _output_record(text, log_format, previous)
        previous = record.levelno
        if record.levelno < threshold:
            continue
        for handler in handlers:
            handler.handle(record)


def _output_record(text: str, log_format: LogFormat, previous: int | None) -> logging.LogRecord:
    """The record of one output line; a line naming no level (a traceback's) continues the
    previous line's."""
    if log_format == "json" and text.startswith("{"):
        try:
            ours = json.loads(text)
        except ValueError:
            ours = None
        if isinstance(ours, dict) and {"time", "level", "logger", "message"} <= set(ours):
            levelno = logging.getLevelName(str(ours["level"]))
            return _record(str(ours["logger"]), levelno if isinstance(levelno, int) else 30, text)
    found = _LEVEL_WORD.search(text)
    if found:
        levelno = logging.getLevelName("WARNING" if found[1] == "WARN" else found[1])
    else:
        levelno = logging.WARNING if previous is None else previous
    clean = redact(text)
    record = _record(OUTPUT_LOGGER, levelno, None)
    record.msg = clean
    if log_format == "text":
        record.preformatted = clean
    return record


def _record(name: str, levelno: int, preformatted: str | None) -> logging.LogRecord:
    fields: dict[str, Any] = {
        "name": name,
        "levelno": levelno,
        "levelname": logging.getLevelName(levelno),
        "msg": "",
    }
    if preformatted is not None:
        fields["preformatted"] = preformatted
    return logging.makeLogRecord(fields)


def start_relay(
    stream: IO[bytes],
    handlers: Sequence[logging.Handler],
    level: LogLevel,
    log_format: LogFormat,
) -> threading.Thread:
    """`relay` of `stream` in a thread that ends when the stream does."""
    thread = threading.Thread(
        target=relay,
        args=(iter(stream.readline, b""), handlers, level, log_format),
        name="log-relay",
        daemon=True,
    )
    thread.start()
    return thread


def console() -> IO[str]:
    """Where a server process writes its log: stderr (journald, a container's log)."""
    return sys.stderr
