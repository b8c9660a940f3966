"""Inputs for the intake tests."""

from __future__ import annotations

import pytest

from tests.helpers.synth import SynthFactory, SynthStudies


@pytest.fixture(scope="session")
def synth_studies(synth_factory: SynthFactory) -> SynthStudies:
    """Six synthetic studies at 320 pixels over the training field of view."""
    return synth_factory("intake-synth", 6, 5151, 320)
