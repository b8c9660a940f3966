"""A real PostgreSQL for tests: a throwaway cluster (`initdb`/`pg_ctl`) in a temporary folder,
on loopback on a free port, stopped and deleted at the end; never a mock.

PostgreSQL refuses to run as root: as root the cluster runs as the `postgres` user (Debian's
package creates it) through `runuser`, in a folder that user owns. The binaries are Debian's
(`/usr/lib/postgresql/*/bin`); when they are missing the tests skip, except in CI (`CI` set),
where missing PostgreSQL is a failure: `scripts/setup` installs it.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers.wait import free_port

SUPERUSER = "postgres"


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(found[-1]).parent if found else None


def _version(path: str) -> float:
    try:
        return float(Path(path).parent.parent.name)
    except ValueError:
        return 0.0


def require_binaries() -> Path:
    """The bin folder; skips the test without PostgreSQL, fails in CI."""
    found = binaries()
    if found is None:
        message = "PostgreSQL is not installed (apt-get install postgresql; scripts/setup does)"
        if os.environ.get("CI"):
            pytest.fail(message + ": required in CI")
        pytest.skip(message)
    return found


@dataclass
class Cluster:
    port: int
    folder: Path
    bin_dir: Path
    owner: str | None
    """The user the server runs as (None: this one)."""
    options: str
    """The server's settings (`pg_ctl -o`), so a stopped cluster starts again the same."""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database's URL (one per test: no state leaks between tests)."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url(name)


def _as_owner(command: list[str], owner: str | None) -> list[str]:
    return ["runuser", "-u", owner, "--", *command] if owner else command


@contextmanager
def start_postgres() -> Iterator[Cluster]:
    """Start a cluster; stop it (fast shutdown) and delete its folder on exit."""
    bin_dir = require_binaries()
    owner = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SUPERUSER)
        except KeyError:
            pytest.fail("running as root and there is no 'postgres' user to run PostgreSQL as")
        owner = SUPERUSER
    folder = Path(tempfile.mkdtemp(prefix="pg-test-"))
    data = folder / "data"
    if owner:
        shutil.chown(folder, owner)
    port = free_port()
    subprocess.run(
        _as_owner(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            owner,
        ),
        check=True,
        capture_output=True,
    )
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    cluster = Cluster(port, folder, bin_dir, owner, options)
    pg_ctl(cluster, "-w", "-t", "60", "start")
    try:
        yield cluster
    finally:
        pg_ctl(cluster, "-m", "fast", "stop", check=False)
        shutil.rmtree(folder, ignore_errors=True)


def pg_ctl(cluster: Cluster, *args: str, check: bool = True) -> None:
    """`pg_ctl` on the cluster (as its owner): `start` with its settings and log, `stop`."""
    data = cluster.folder / "data"
    command = [str(cluster.bin_dir / "pg_ctl"), "-D", str(data)]
    if "start" in args:
        command += ["-o", cluster.options, "-l", str(cluster.folder / "log")]
    subprocess.run(_as_owner([*command, *args], cluster.owner), check=check, capture_output=True)
