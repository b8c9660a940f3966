"""A model package with known reference distributions (the bundled graph, its manifest with a
reference block and its own version), so drift tests do not depend on the bundled package's."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics.constants import BUNDLED_MODEL
from diagnostics.package import ModelPackage, load_package, write_package
from diagnostics.package.reference import APPEARANCE_EDGES, PROBABILITY_EDGES

REFERENCE_COUNTS = [400, 150, 100, 80, 60, 50, 50, 40, 40, 30]
"""Mostly low probabilities, as a screening population's are."""


def make_package(out: Path, *, reference: bool, version: str) -> ModelPackage:
    bundled = load_package(BUNDLED_MODEL)
    manifest = bundled.manifest.model_dump()
    manifest["version"] = version
    manifest["reference_distributions"] = None
    if reference:
        appearance = [0] * (len(APPEARANCE_EDGES) - 1)
        appearance[2], appearance[3], appearance[4] = 300, 500, 200
        manifest["reference_distributions"] = {
            "data": "validation split of test data (by patient)",
            "studies": sum(REFERENCE_COUNTS),
            "probability_edges": list(PROBABILITY_EDGES),
            "findings": {code: list(REFERENCE_COUNTS) for code in bundled.finding_codes},
            "appearance_edges": list(APPEARANCE_EDGES),
            "appearance": appearance,
        }
    return write_package(out, bundled.onnx_path, manifest)


@pytest.fixture(scope="session")
def referenced(tmp_path_factory: pytest.TempPathFactory) -> ModelPackage:
    return make_package(
        tmp_path_factory.mktemp("pkg") / "ref", reference=True, version="1.0.0-monitoring"
    )


@pytest.fixture(scope="session")
def unreferenced(tmp_path_factory: pytest.TempPathFactory) -> ModelPackage:
    return make_package(
        tmp_path_factory.mktemp("pkg") / "old", reference=False, version="1.0.0-old"
    )
