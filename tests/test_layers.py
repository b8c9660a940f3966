"""The import layers of docs/architecture.md, checked by import-linter (`lint-imports`) with the
contracts in pyproject.toml's `[tool.importlinter]`: no layer imports a layer above it, and no
two sibling packages or modules import each other (directly or through others)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def _lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    # This checkout's `diagnostics`, not an installed copy of another one.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_the_layer_and_cycle_contracts_are_kept() -> None:
    result = _lint_imports()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_the_layers_contract_catches_an_upward_import(tmp_path: Path) -> None:
    """The same contract with the layers upside down must break: the check is not vacuous."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (layers,) = [c for c in config["contracts"] if c["type"] == "layers"]
    flipped = tmp_path / "flipped.ini"
    flipped.write_text(
        "[importlinter]\n"
        f"root_package = {config['root_package']}\n"
        "[importlinter:contract:flipped]\n"
        "name = flipped\n"
        "type = layers\n"
        f"containers = {layers['containers'][0]}\n"
        "layers =\n" + "".join(f"    {layer}\n" for layer in reversed(layers["layers"]))
    )
    result = _lint_imports(str(flipped))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "flipped BROKEN" in result.stdout
