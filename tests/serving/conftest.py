"""The real service, started once per module with `diagnostics serve` on free ports."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from diagnostics.synth.study import StudyTruth
from tests.helpers.service import Server, start_service
from tests.helpers.synth import SynthFactory
from tests.serving.settings import MAX_REQUEST_BYTES, READ_TIMEOUT_S, TOKEN


@pytest.fixture(scope="session")
def one_image_studies(synth_factory: SynthFactory) -> list[tuple[Path, StudyTruth]]:
    """Ten one-image studies at 384 pixels over the training field of view: (file, truth)."""
    made = synth_factory("serving-synth", 10, 3, 384)
    files = sorted(made.folder.glob("study-*/*.dcm"))
    assert len(files) == len(made.truths)
    return list(zip(files, made.truths, strict=True))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "DIAGNOSTICS_STABLE_SECONDS": "0.5",
        "DIAGNOSTICS_MAX_REQUEST_BYTES": str(MAX_REQUEST_BYTES),
        "DIAGNOSTICS_REQUEST_READ_TIMEOUT_S": str(READ_TIMEOUT_S),
    }
    root = tmp_path_factory.mktemp("serving")
    server = start_service(root, "--workers", "1", token=TOKEN, env=env)
    try:
        yield server
    finally:
        server.stop()
