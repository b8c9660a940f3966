"""The deployment files in `deploy/`: the systemd unit passes `systemd-analyze verify`, and the
example environment file names only settings the service knows."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diagnostics.service.settings import ServiceSettings

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    # The unit names the installed entry point under /opt; point it at this checkout's so that
    # verify can check that the command exists, and change nothing else.
    entry_point = Path(sys.executable).with_name("diagnostics")
    text = (DEPLOY / "diagnostics.service").read_text(encoding="utf-8")
    assert "ExecStart=/opt/diagnostics/.venv/bin/diagnostics serve" in text
    unit = tmp_path / "diagnostics.service"
    unit.write_text(text.replace("/opt/diagnostics/.venv/bin/diagnostics", str(entry_point)))
    done = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Unknown" not in done.stderr, done.stderr  # a misspelt key is only a warning


def test_example_environment_names_only_known_settings() -> None:
    known = {f"DIAGNOSTICS_{name.upper()}" for name in ServiceSettings.model_fields}
    known |= {"DIAGNOSTICS_API_TOKEN", "DIAGNOSTICS_API_TOKEN_FILE"}
    lines = (DEPLOY / "diagnostics.env.example").read_text().splitlines()
    names = [line.split("=", 1)[0] for line in lines if line.strip() and not line.startswith("#")]
    offered = [  # the commented-out ones an administrator may turn on
        line[1:].split("=", 1)[0] for line in lines if line.startswith("#DIAGNOSTICS_")
    ]
    assert names and {"DIAGNOSTICS_LOG_LEVEL", "DIAGNOSTICS_LOG_FILE"} <= set(offered)
    assert [n for n in names + offered if n not in known] == []
