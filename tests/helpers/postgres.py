"""A real PostgreSQL for tests: the throwaway cluster of `diagnostics.bench.postgres`
(`initdb`/`pg_ctl` in a temporary folder, loopback, a free port; as root, run as the `postgres`
user), never a mock. Without PostgreSQL the tests skip, except in CI (`CI` set), where it is a
failure: `scripts/setup` installs it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from diagnostics.bench.postgres import Cluster, binaries, throwaway_cluster

__all__ = ["Cluster", "pg_ctl", "start_postgres"]


def require_binaries() -> None:
    """Skip the test without PostgreSQL; fail in CI."""
    if binaries() is None:
        message = "PostgreSQL is not installed (apt-get install postgresql; scripts/setup does)"
        if os.environ.get("CI"):
            pytest.fail(message + ": required in CI")
        pytest.skip(message)


@contextmanager
def start_postgres() -> Iterator[Cluster]:
    """Start a cluster; stop it and delete its folder on exit."""
    require_binaries()
    with throwaway_cluster() as cluster:
        yield cluster


def pg_ctl(cluster: Cluster, *args: str) -> None:
    """`pg_ctl` on the cluster as its owner (the database-down test stops and starts it)."""
    cluster.pg_ctl(*args)
