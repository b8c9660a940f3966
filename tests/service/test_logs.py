"""The service's log, from the real service and DCMTK: a JSON file with one line per
association, stored instance, screened study and delivery (each study's lines sharing one
correlation id), never a planted patient string; rotation; levels. And the formatters alone."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import pydicom
import pydicom.uid
import pytest

from diagnostics.cli.main import NoTraceback
from diagnostics.errors import ConfigurationError
from diagnostics.service.logs import (
    JsonFormatter,
    TextFormatter,
    about_study,
    correlation_id,
    destination_label,
    relay,
    study_fields,
)
from tests.helpers.pacs import Orthanc
from tests.helpers.service import start_service
from tests.helpers.synth import SynthFactory
from tests.helpers.wait import free_port, wait_for

CALLING_AE = "LOGSENDER"
PROBE = "LOGPROBE"
"""Planted in the patient's name and in the refused header values: never in the log."""


def _dcmsend(port: int, files: Sequence[Path], aet: str = CALLING_AE) -> int:
    command = ["dcmsend", "-aet", aet, "-aec", "DIAGNOSTICS", "127.0.0.1", str(port)]
    return subprocess.run([*command, *map(str, files)], capture_output=True, timeout=120).returncode


def _planted(source: Path, folder: Path) -> list[Path]:
    """Two instances the service refuses, whose refusal messages quote a planted value."""
    out = []
    for keyword in ("PhotometricInterpretation", "StudyInstanceUID"):
        ds = pydicom.dcmread(source)
        ds.PatientName = f"{PROBE}^NAME^{keyword}"
        ds.PatientID = f"{PROBE}-ID"
        setattr(ds, keyword, f"{PROBE}^{keyword.upper()}")
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
        path = folder / f"planted-{keyword}.dcm"
        ds.save_as(path, enforce_file_format=True)
        out.append(path)
    return out


def _records(log_file: Path) -> list[dict[str, Any]]:
    """Every line of the log file, each parsed as one JSON object (or the test fails)."""
    lines = log_file.read_text("utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r, dict) for r in records)
    return records


def _events(log_file: Path, event: str) -> list[dict[str, Any]]:
    return [r for r in _records(log_file) if r.get("event") == event] if log_file.exists() else []


@pytest.mark.slow
def test_json_log_has_a_line_per_association_instance_study_and_delivery(
    tmp_path: Path, synth_factory: SynthFactory, orthanc: Orthanc
) -> None:
    studies = synth_factory("logs-json", 2, 3131, 256)
    uids = [
        str(pydicom.dcmread(f, stop_before_pixels=True).StudyInstanceUID) for f in studies.files
    ]
    dicom_port, nobody = free_port(), free_port()
    log_file = tmp_path / "logs" / "service.log"
    server = start_service(
        tmp_path,
        *("--allow-ae", CALLING_AE, "--stable-seconds", "0.5"),
        *("--results-to", f"{orthanc.aet}@127.0.0.1:{orthanc.dicom_port}"),
        *("--results-to", f"NOBODY@127.0.0.1:{nobody}"),  # refused: retried with backoff
        *("--log-format", "json", "--log-file", str(log_file)),
        dicom_port=dicom_port,
    )
    try:
        assert _dcmsend(dicom_port, studies.files) == 0
        _dcmsend(dicom_port, _planted(studies.files[0], tmp_path))
        assert _dcmsend(dicom_port, studies.files[:1], aet="INTRUDER") != 0

        def delivered_and_retried() -> bool:
            done = {r["study_instance_uid"] for r in _events(log_file, "output_delivered")}
            retried = {r["study_instance_uid"] for r in _events(log_file, "output_retried")}
            return set(uids) <= done & retried

        wait_for(delivered_and_retried, 240, "every study delivered to Orthanc and retried")
    finally:
        server.stop()

    records = _records(log_file)
    for record in records:
        assert {"time", "level", "logger", "message"} <= set(record), record
        assert record["time"].endswith("Z")
        assert datetime.fromisoformat(record["time"]).utcoffset() is not None
    text = log_file.read_text("utf-8")
    assert PROBE not in text and PROBE not in server.log.read_text("utf-8", "replace")

    def one(event: str, **fields: object) -> dict[str, Any]:
        found = [r for r in records if r.get("event") == event and fields.items() <= r.items()]
        assert found, (event, fields)
        return found[0]

    accepted = one("association_accepted", calling_ae=CALLING_AE)
    assert accepted["peer"] == "127.0.0.1"
    one("association_rejected", calling_ae="INTRUDER", peer="127.0.0.1")
    refusals = [r for r in records if r.get("event") == "instance_refused"]
    assert len(refusals) == 2 and all(r["calling_ae"] == CALLING_AE for r in refusals)
    ids = set()
    for uid in uids:
        cid = correlation_id(uid)
        ids.add(cid)
        stored = one("instance_stored", study_instance_uid=uid)
        assert stored["correlation_id"] == cid and stored["source"] == f"dimse:{CALLING_AE}"
        assert stored["sop_instance_uid"].startswith(("1.", "2."))
        screened = one("study_screened", study_instance_uid=uid)
        assert screened["correlation_id"] == cid
        assert screened["status"] == "analyzed" and screened["model_name"] == "cxr-demo"
        assert screened["model_version"] and screened["duration_s"] > 0
        delivered = one("output_delivered", study_instance_uid=uid)
        assert delivered["correlation_id"] == cid and delivered["attempt"] == 1
        assert delivered["destination"].startswith(orthanc.aet + "@")
        retried = one("output_retried", study_instance_uid=uid, attempt=1)
        assert retried["correlation_id"] == cid and retried["destination"].startswith("NOBODY@")
        assert retried["retry_in_s"] > 0
        # Every line naming the study carries its correlation id.
        about = [r for r in records if uid in r["message"]]
        assert about and all(r.get("correlation_id") == cid for r in about), about
    assert len(ids) == len(uids)


@pytest.mark.slow
def test_the_log_file_rotates_and_the_level_holds(
    tmp_path: Path, synth_factory: SynthFactory
) -> None:
    studies = synth_factory("logs-rotate", 1, 4141, 128)
    dicom_port = free_port()
    log_file = tmp_path / "service.log"
    server = start_service(
        tmp_path,
        *("--allow-ae", CALLING_AE, "--log-level", "warning", "--log-file", str(log_file)),
        *("--log-max-bytes", "1500", "--log-backups", "2"),
        dicom_port=dicom_port,
    )
    try:
        planted = _planted(studies.files[0], tmp_path)
        for _ in range(8):  # a WARNING line per refused instance and per rejected association
            _dcmsend(dicom_port, planted)
            _dcmsend(dicom_port, studies.files, aet="INTRUDER")
        assert _dcmsend(dicom_port, studies.files) == 0  # stored: an INFO line, not logged
        wait_for(lambda: log_file.with_name("service.log.2").exists(), 60, "two rotations")
    finally:
        server.stop()
    files = [log_file, log_file.with_name("service.log.1"), log_file.with_name("service.log.2")]
    assert not log_file.with_name("service.log.3").exists()
    lines = [line for f in files for line in f.read_text("utf-8").splitlines()]
    assert all(f.stat().st_size <= 1500 for f in files)
    levels = {line.split()[1] for line in lines if line[:4].isdigit()}
    assert levels and levels <= {"WARNING", "ERROR", "CRITICAL"}, levels
    assert any("C-STORE from LOGSENDER refused" in line for line in lines)
    assert not any("stored from" in line for line in lines)
    assert PROBE not in "\n".join(lines)


# -- the formatters alone ----------------------------------------------------------------------


def _record(exc: bool = False, **extra: object) -> logging.LogRecord:
    logger = logging.getLogger("diagnostics.test.logs")
    name = "DOE^JANE"
    try:
        raise ValueError(f"Invalid value for VR PN: {name!r}")  # the frames show this line
    except ValueError:
        info = sys.exc_info() if exc else None
    return logger.makeRecord(
        logger.name,
        logging.WARNING,
        __file__,
        1,
        "peer said %r",
        ("SMITH^JOHN",),
        info,
        extra=extra,
    )


def test_json_lines_carry_the_event_fields_and_no_quoted_values() -> None:
    record = _record(exc=True, **study_fields("1.2.3", "study_screened", status="analyzed"))
    line = JsonFormatter().format(record)
    assert "\n" not in line
    out = json.loads(line)
    assert out["level"] == "WARNING" and out["logger"] == "diagnostics.test.logs"
    assert out["message"] == "peer said '<redacted>'"
    assert out["event"] == "study_screened" and out["status"] == "analyzed"
    assert out["correlation_id"] == correlation_id("1.2.3") != correlation_id("1.2.4")
    assert "DOE^JANE" not in line and "SMITH" not in line and "Traceback" in out["exception"]
    text = TextFormatter().format(record)
    assert f"[study {correlation_id('1.2.3')}]" in text and "DOE^JANE" not in text


def test_lines_logged_while_working_on_a_study_carry_its_id() -> None:
    with about_study("1.2.3"):
        inside = json.loads(JsonFormatter().format(_record()))
        text = TextFormatter().format(_record())
    outside = json.loads(JsonFormatter().format(_record()))
    assert inside["correlation_id"] == correlation_id("1.2.3")
    assert text.endswith(f"[study {correlation_id('1.2.3')}]")
    assert "correlation_id" not in outside


def test_leaving_out_a_traceback_changes_no_shared_record() -> None:
    record = _record(exc=True)
    assert "Traceback" not in NoTraceback("%(message)s").format(record)
    assert record.exc_info is not None  # the next handler still has it
    assert "Traceback" in TextFormatter().format(record)


def test_foreign_output_lines_are_redacted_wrapped_and_filtered_by_level() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    ours = json.dumps({"time": "t", "level": "ERROR", "logger": "x", "message": "m", "a": 1})
    lines = [
        b"Traceback (most recent call last):\n",
        b"ValueError: bad 'PROBE^Y'\n",
        b"2026-01-01T00:00:00+0000 [INFO] [cli] Starting 'PROBE^X'\n",
        b"  a line continuing the INFO line\n",
        ours.encode() + b"\n",
    ]
    relay(lines, [handler], "WARNING", "json")
    out = [json.loads(line) for line in stream.getvalue().splitlines()]
    # A traceback (no level of its own) first is a WARNING; the INFO line and the line that
    # continues it are below the level.
    assert [r["logger"] for r in out] == ["diagnostics.output", "diagnostics.output", "x"]
    assert out[1]["message"] == "ValueError: bad '<redacted>'"
    assert out[2] == json.loads(ours)
    assert "PROBE" not in stream.getvalue()


FORGED = "2026-01-01T00:00:00.000Z ERROR diagnostics.intake: forged"


def _peer_record() -> logging.LogRecord:
    """A message quoting a planted value over two lines, and a peer's answer in an exception
    that tries to write a log line of its own."""
    logger = logging.getLogger("diagnostics.test.logs")
    answer = "FHIR server answered 400: 'DOE^\nJANE'\r\n" + FORGED + "\x1b[2J"
    try:
        raise RuntimeError(answer)  # the frames show this line, not the answer
    except RuntimeError:
        info = sys.exc_info()
    return logger.makeRecord(
        logger.name, logging.WARNING, __file__, 1, "peer said %r and \"%s\"",
        ("SMITH^\nJOHN", "ROE^\r\nRICHARD"), info,
    )  # fmt: skip


def test_a_peers_text_cannot_forge_log_lines_nor_escape_redaction() -> None:
    record = _peer_record()
    text = TextFormatter().format(record)
    for planted in ("DOE", "JANE", "SMITH", "JOHN", "ROE", "RICHARD", "\x1b", "\r"):
        assert planted not in text
    # The message is one line; the traceback's frames follow, its last line is the peer's
    # answer escaped: no line of the text starts like a log line of ours.
    lines = text.split("\n")
    assert lines[0].endswith("peer said '<redacted>' and '<redacted>'")
    assert not any(line.startswith("2026-01-01") for line in lines)
    assert lines[-1].startswith("RuntimeError: FHIR server answered 400: '<redacted>'\\r\\n")
    assert lines[-1].endswith("forged\\x1b[2J")
    out = json.loads(JsonFormatter().format(record))  # JSON encodes; redaction still holds
    assert out["message"] == "peer said '<redacted>' and '<redacted>'"
    assert "DOE" not in out["exception"] and "JANE" not in out["exception"]
    stream = io.StringIO()  # what `diagnostics serve` relays: the same lines, still ours
    handler = logging.StreamHandler(stream)
    handler.setFormatter(TextFormatter())
    relay([(line + "\n").encode() for line in lines], [handler], "INFO", "text")
    assert not any(line.startswith("2026-01-01") for line in stream.getvalue().splitlines())


def test_destinations_are_logged_without_credentials() -> None:
    assert destination_label("fhir+https://u:secret@emr.example.org/fhir") == (
        "fhir+https://emr.example.org/fhir"
    )
    assert destination_label("PACS@10.0.0.1:104") == "PACS@10.0.0.1:104"


def test_log_settings_are_flags_and_variables_and_survive_the_round_trip(tmp_path: Path) -> None:
    from diagnostics.cli.main import build_parser
    from diagnostics.serve import config_from_args
    from diagnostics.service.settings import ServiceSettings

    flags = ["serve", "--log-level", "debug", "--log-format", "JSON"]
    flags += ["--log-file", str(tmp_path / "x.log"), "--log-max-bytes", "0", "--log-backups", "3"]
    environ = {"DIAGNOSTICS_LOG_LEVEL": "error", "DIAGNOSTICS_LOG_BACKUPS": "9"}
    config = config_from_args(build_parser().parse_args(flags), environ)
    assert (config.log_level, config.log_format, config.log_backups) == ("DEBUG", "json", 3)
    assert config.log_max_bytes == 0 and config.log_file == tmp_path / "x.log"
    assert ServiceSettings.from_env(config.to_env()) == config
    assert ServiceSettings.from_env(environ).log_level == "ERROR"
    with pytest.raises(ConfigurationError, match="LOG_LEVEL"):
        ServiceSettings.from_env({"DIAGNOSTICS_LOG_LEVEL": "chatty"})


def test_pydicoms_repair_warnings_are_logged_once_not_twice() -> None:
    """pydicom logs a value it repaired and warns about it too: the service's logging keeps
    its log line and drops the duplicate warning (no per-value filter swapping on threads)."""
    script = """
import io, pydicom
from pydicom.dataelem import RawDataElement
from pydicom.tag import Tag
from diagnostics.dicom.patient import study_header
from diagnostics.service.logs import configure_process_logging
out = io.StringIO()
configure_process_logging("INFO", "text", out)
for _ in range(3):
    ds = pydicom.Dataset()
    ds.SpecificCharacterSet = "ISO_IR 999"
    ds[0x00100010] = RawDataElement(Tag(0x00100010), "PN", 4, b"\\xffA^B", 0, True, True)
    study_header(ds)
print(out.getvalue())
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if "Unknown encoding" in line]
    assert lines and all(" pydicom: " in line for line in lines), lines
    assert "ISO_IR 999" not in done.stdout  # quoted: redacted
