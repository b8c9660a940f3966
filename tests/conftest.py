"""Fixtures shared by every test folder: the bundled model package, a synthetic-study factory
and an Orthanc PACS. Plain helpers are in `tests/helpers/`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from diagnostics.package import ModelPackage, load_package
from tests.helpers.pacs import Orthanc, start_orthanc
from tests.helpers.synth import BUNDLED, SynthFactory, SynthStudies, make_synth_studies


@pytest.fixture(scope="session")
def bundled() -> ModelPackage:
    """The repository's model package (`models/cxr-demo`), loaded and verified once."""
    return load_package(BUNDLED)


@pytest.fixture(scope="session")
def synth_factory(tmp_path_factory: pytest.TempPathFactory) -> SynthFactory:
    """Synthetic studies in a fresh temporary folder named after `name`, per call (a fixture of
    any scope may call it: the folders live as long as the session)."""

    def make(name: str, count: int, seed: int, size: int, **kwargs: Any) -> SynthStudies:
        return make_synth_studies(tmp_path_factory.mktemp(name), count, seed, size, **kwargs)

    return make


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Orthanc]:
    """Orthanc (Debian package) with DICOMweb, on loopback, for the whole session."""
    with start_orthanc(tmp_path_factory.mktemp("orthanc")) as server:
        yield server
