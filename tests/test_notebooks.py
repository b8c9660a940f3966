"""The researcher notebooks run top to bottom (with tiny settings) in a real Jupyter kernel."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["retrain.ipynb", "compare.ipynb"])
def test_notebook_runs_and_produces_a_package(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DIAGNOSTICS_NOTEBOOK_TINY", "1")
    monkeypatch.setenv("DIAGNOSTICS_NOTEBOOK_WORK", str(tmp_path))
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()
    assert (tmp_path / "package" / "manifest.json").is_file()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 3  # sample studies, ROC/reliability plots, CAM overlay
    assert os.environ["DIAGNOSTICS_NOTEBOOK_TINY"] == "1"
