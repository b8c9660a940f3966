"""The Bento's Python packages are the project's own dependencies: a package missing from
`serving/bentofile.yaml` builds fine and fails only when the image starts."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_bento_packages_match_the_project_dependencies() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    bento = yaml.safe_load((ROOT / "serving" / "bentofile.yaml").read_text())
    assert sorted(bento["python"]["packages"]) == sorted(project)
