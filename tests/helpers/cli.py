"""The `diagnostics` command line as a real subprocess, and its one-line refusal contract."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.helpers.synth import ROOT


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """`diagnostics ARGS...` with this checkout's code."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "diagnostics.cli", *map(str, args)]
    return subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )


def assert_refused(result: subprocess.CompletedProcess[str], error_class: str) -> str:
    """Exit 2 and one stderr line naming the class; returns the message after the class."""
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    prefix = f"error: {error_class}: "
    assert lines[0].startswith(prefix), lines[0]
    assert result.stdout == ""
    return lines[0][len(prefix) :]
