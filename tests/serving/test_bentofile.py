"""The Bento's definition agrees with the project: its Python packages are the project's own
dependencies (a package missing from `serving/bentofile.yaml` builds fine and fails only when
the image starts), it serves the service `diagnostics serve` runs, and it carries that file."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from diagnostics.serve import SERVICE

ROOT = Path(__file__).resolve().parents[2]


def _bento() -> Any:
    return yaml.safe_load((ROOT / "serving" / "bentofile.yaml").read_text())


def test_bento_packages_match_the_project_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert sorted(_bento()["python"]["packages"]) == sorted(project)


def test_bento_serves_the_packaged_service_and_includes_it() -> None:
    bento = _bento()
    assert bento["service"] == SERVICE
    module = SERVICE.partition(":")[0]
    service_file = ROOT.joinpath(*module.split(".")).with_suffix(".py")
    assert service_file.is_file(), service_file
    included = {path for pattern in bento["include"] for path in ROOT.glob(pattern)}
    assert service_file in included
    for pattern in bento["include"]:
        assert any(ROOT.glob(pattern)), f"bentofile include {pattern!r} matches no file"


@pytest.mark.slow
def test_bento_builds_with_no_network(tmp_path: Path) -> None:
    """`bentoml build` resolves `uv` first and pip-installs it when it is missing (BentoML 1.4,
    `_bentoml_sdk/images.py`); the `dev` extra brings it, so the build reaches no index: here
    every package index and proxy is a dead address."""
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(d.startswith("uv") for d in dev["dev"])
    dead = "http://127.0.0.1:9"
    env = {
        **os.environ,
        "BENTOML_HOME": str(tmp_path),
        "BENTOML_DO_NOT_TRACK": "True",
        "PIP_NO_INDEX": "1",
        "PIP_INDEX_URL": dead + "/simple",
        "UV_OFFLINE": "1",
        "http_proxy": dead,
        "https_proxy": dead,
        "HTTP_PROXY": dead,
        "HTTPS_PROXY": dead,
    }
    command = [sys.executable, "-m", "bentoml", "build", "-f", "serving/bentofile.yaml", "."]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900, check=False
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "uv is not installed" not in output
    (bento,) = [p for p in (tmp_path / "bentos" / "diagnostics").iterdir() if p.name != "latest"]
    assert (bento / "src" / "diagnostics" / "serving" / "service.py").is_file()
    assert (bento / "src" / "models" / "cxr-demo" / "model.onnx").is_file()
    requirements = (bento / "env" / "python" / "requirements.txt").read_text()
    assert "onnxruntime" in requirements and "pynetdicom" in requirements
