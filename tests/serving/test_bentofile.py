"""The Bento's definition agrees with the project: its Python packages are the project's own
dependencies (a package missing from `serving/bentofile.yaml` builds fine and fails only when
the image starts), it serves the service `diagnostics serve` runs, and it carries that file."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

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
