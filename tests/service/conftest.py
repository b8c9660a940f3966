"""Inputs for the intake tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from diagnostics.store import Store, open_store
from tests.helpers.postgres import Cluster, start_postgres
from tests.helpers.synth import SynthFactory, SynthStudies


@pytest.fixture(scope="session")
def synth_studies(synth_factory: SynthFactory) -> SynthStudies:
    """Six synthetic studies at 320 pixels over the training field of view."""
    return synth_factory("intake-synth", 6, 5151, 320)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Cluster]:
    """One throwaway PostgreSQL cluster for the session (each test gets its own database)."""
    with start_postgres() as cluster:
        yield cluster


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest) -> str | None:
    """The `--database` of a store test: None (SQLite in the storage folder) or a fresh
    PostgreSQL database: the store tests run against both backends."""
    if request.param == "sqlite":
        return None
    cluster: Cluster = request.getfixturevalue("postgres")
    return cluster.new_database()


@pytest.fixture
def make_store(database: str | None) -> Iterator[Callable[..., Store]]:
    """Open a store under a storage folder on this test's backend (again: the same database)."""
    opened: list[Store] = []

    def make(root: Path, **options: Any) -> Store:
        store = open_store(root, database=database, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()
