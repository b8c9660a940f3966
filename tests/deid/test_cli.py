"""`diagnostics research-export` run as a subprocess, the way an administrator runs it.

Two runs only: interpreter start-up with every command's imports is the slow part. What the
library refuses and why is tested in `test_export.py`; here, that it reaches the command line
as JSON on stdout, or as one `error:` line and exit 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from diagnostics.store.sqlite import SqliteStore
from diagnostics.synth import SynthConfig, generate
from tests.helpers.cli import assert_refused, run_cli


@pytest.fixture(scope="module")
def storage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("deid-cli")
    generate(root / "synth", 2, 5, SynthConfig(rows=256, columns=256, spacing_mm=1.6))
    store = SqliteStore(root / "storage")
    for path in sorted((root / "synth").rglob("*.dcm")):
        store.receive(path.read_bytes(), "test")
    store.close()
    return root / "storage"


@pytest.mark.slow  # two interpreter start-ups; the parser imports every command's dependencies
def test_export_prints_a_summary_and_refuses_to_overwrite(storage: Path, tmp_path: Path) -> None:
    out, salt = tmp_path / "export", tmp_path / "salt"
    args = ("research-export", "--storage", storage, "--out", out, "--salt-file", salt)
    result = run_cli(*args, "--shift-dates")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary == {
        "out": str(out),
        "studies": 2,
        "instances": 2,
        "quarantined": 0,
        "results": 0,
        "feedback": 0,
    }
    assert len(list((out / "studies").rglob("*.dcm"))) == 2
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["shift_dates"] is True
    assert salt.is_file() and not str(salt).startswith(str(out))
    before = (out / "manifest.json").read_bytes()
    message = assert_refused(run_cli(*args), "ConfigurationError")
    assert "already exists" in message
    assert (out / "manifest.json").read_bytes() == before
