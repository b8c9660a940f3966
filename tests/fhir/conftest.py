"""The catalogue the FHIR tests build reports against (results are built by `sample.py`)."""

from __future__ import annotations

import pytest

from diagnostics.package import Manifest, ModelPackage


@pytest.fixture(scope="session")
def manifest(bundled: ModelPackage) -> Manifest:
    return bundled.manifest
