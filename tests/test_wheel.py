"""A wheel built from the repository serves: installed into a fresh virtualenv outside the
checkout, `diagnostics serve --model PATH` starts, answers `/readyz` and stops on SIGTERM.

Nothing is downloaded: the wheel is installed without dependencies, and the new virtualenv sees
the project's own site-packages through a `.pth` file. Such a path is searched after the new
virtualenv's own site-packages, so `diagnostics` must (and is checked to) come from the wheel,
not from the checkout: every command runs outside the repository with PYTHONPATH unset.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import requests

from diagnostics.constants import DATABASE_FILE
from tests.helpers.service import start_service
from tests.helpers.wait import free_port

TOKEN = "wheel-test-token-0123456789"

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
WHEEL_SOURCES = ("pyproject.toml", "README.md", "diagnostics")
"""What the wheel is built from. Copied out first, so that the build's egg-info and build/
folders never land in the checkout (or race another test's imports there)."""


def _run(command: list[str | Path], cwd: Path, timeout: float = 300) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=_outside_env(cwd),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"{command}: {result.stdout[-2000:]}{result.stderr[-3000:]}"
    return result.stdout


def _outside_env(home: Path) -> dict[str, str]:
    """The environment of someone who installed the wheel: no PYTHONPATH into the checkout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIAGNOSTICS_", "PYTHON"))}
    env.update(
        {
            "BENTOML_HOME": str(home / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "True",
            "PIP_NO_INDEX": "1",  # nothing may come from a registry
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
    )
    return env


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv with the wheel installed and the project's dependencies visible."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in WHEEL_SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(
                ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
            )
        else:
            shutil.copy2(ROOT / name, source / name)
    dist = root / "dist"
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", ".", "--no-deps", "--no-build-isolation", "-w", dist, "-q"], source)
    [wheel] = dist.glob("radiology_diagnostics-*.whl")

    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], root)
    python = venv / "bin" / "python"
    site = Path(
        _run(
            [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], root
        ).strip()
    )
    (site / "project-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel, "-q"], root)
    return venv


def test_the_wheel_is_what_the_new_virtualenv_imports(venv: Path) -> None:
    here = venv.parent
    script = "import diagnostics, diagnostics.serving.service as s; print(diagnostics.__file__)"
    found = Path(_run([venv / "bin" / "python", "-c", script], here).strip())
    assert found.is_relative_to(venv), found
    assert not found.is_relative_to(ROOT)
    templates = found.parent / "ui" / "templates"
    assert sorted(p.name for p in templates.glob("*.html")) == sorted(
        p.name for p in (ROOT / "diagnostics" / "ui" / "templates").glob("*.html")
    )
    assert any((found.parent / "ui" / "static").glob("*.css"))
    assert "--model" in _run([venv / "bin" / "diagnostics", "serve", "--help"], here)


def test_without_a_model_path_the_installed_serve_asks_for_one(venv: Path) -> None:
    here = venv.parent
    env = {**_outside_env(here), "DIAGNOSTICS_API_TOKEN": TOKEN}
    command = [venv / "bin" / "diagnostics", "serve", "--storage", here / "no-model-storage"]
    result = subprocess.run(
        [*map(str, command), "--port", str(free_port())],
        cwd=here,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("error: ConfigurationError: --model: no model package given")
    assert "give --model PATH" in line


def test_the_installed_wheel_serves_until_sigterm(venv: Path) -> None:
    here = venv.parent
    model = here / "cxr-demo"
    shutil.copytree(ROOT / "models" / "cxr-demo", model)
    storage = here / "storage"
    server = start_service(
        here,
        "--model",
        str(model),
        token=TOKEN,
        storage=storage,
        program=[venv / "bin" / "diagnostics"],
        cwd=here,
        base_env=_outside_env(here),
    )
    url = server.url
    try:
        # The review UI's templates and static files came with the wheel (package-data).
        assert requests.get(url + "/ui/static/ui.css", timeout=30).status_code == 200
        login = requests.get(url + "/ui/login", timeout=30)
        assert login.status_code == 200 and "<form" in login.text, login.text[:500]
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert requests.get(url + "/v1/worklist", headers=auth, timeout=30).status_code == 200
    finally:
        server.stop()
    assert server.process.returncode == 0, server.log.read_text()[-3000:]
    assert (storage / DATABASE_FILE).is_file()


def test_the_wheel_carries_the_translation_catalogues(venv: Path) -> None:
    script = (
        "from diagnostics.i18n import LOCALE_DIR, translator; "
        "print(LOCALE_DIR); print(translator('ru').gettext('Pneumothorax'))"
    )
    folder, word = _run([venv / "bin" / "python", "-c", script], venv.parent).split()
    assert Path(folder).is_relative_to(venv) and word == "Пневмоторакс"
