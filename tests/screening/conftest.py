"""Inputs for screening tests: fresh synthetic studies and the bundled model with a profile
fitted here (the bundled package itself is the root conftest's `bundled`)."""

from __future__ import annotations

import pytest

from diagnostics.appearance import fit_profile
from diagnostics.dicom import read_instance
from diagnostics.package import ModelPackage, write_package
from diagnostics.preprocess import preprocess_image
from tests.helpers.synth import SynthFactory, SynthStudies

SEED = 4242
"""Never used for the bundled model's training or test data (101, 202)."""


@pytest.fixture(scope="session")
def synth_studies(synth_factory: SynthFactory) -> SynthStudies:
    """12 studies at 384 pixels over the training field of view: half the decode cost."""
    return synth_factory("screening-synth", 12, SEED, 384)


@pytest.fixture(scope="session")
def profiled(
    bundled: ModelPackage, synth_factory: SynthFactory, tmp_path_factory: pytest.TempPathFactory
) -> ModelPackage:
    """The bundled model with an appearance profile fitted here on 40 other synthetic studies."""
    made = synth_factory("profile-synth", 40, SEED + 1, 256)
    spec = bundled.manifest.preprocessing
    tensors = [preprocess_image(read_instance(path), spec) for path in made.files]
    profile = fit_profile(
        tensors[:28], tensors[28:], fitted_on="40 test phantoms", threshold_chosen_on="12 of them"
    )
    manifest = bundled.manifest.model_copy(update={"appearance": profile})
    return write_package(tmp_path_factory.mktemp("profiled") / "pkg", bundled.onnx_path, manifest)
