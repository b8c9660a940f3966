"""Shared fixtures for the DICOM ingestion tests: the generated corpus, built once per worker.

Each pytest-xdist worker is its own process with its own session, so each builds a private copy
in its own temporary folder; nothing is shared between workers and nothing is written to the
repository.
"""

from __future__ import annotations

import pytest

from tests.dicom.corpus import Corpus, build_corpus


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    """Every valid and malformed case, written to a session-wide temporary folder."""
    return build_corpus(tmp_path_factory.mktemp("dicom-corpus"))
