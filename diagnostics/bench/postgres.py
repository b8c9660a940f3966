"""A throwaway PostgreSQL cluster (`initdb`/`pg_ctl`) in a temporary folder, on loopback on a
free port, stopped and deleted at the end: what `diagnostics bench --nodes` runs its nodes
against when no `--database` is given, and what the tests use as the real database.

PostgreSQL refuses to run as root, so as root the cluster runs as the `postgres` user (Debian's
package creates it) through `runuser`, in a folder that user owns. Durability is switched off
(fsync, synchronous commit): the data dies with the folder anyway.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from diagnostics.errors import ConfigurationError

SUPERUSER = "postgres"


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian's layout), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=_version)
    return Path(found[-1]).parent if found else None


def _version(path: str) -> float:
    try:
        return float(Path(path).parent.parent.name)
    except ValueError:
        return 0.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Cluster:
    port: int
    folder: Path
    bin_dir: Path
    owner: str | None
    """Who runs it: None (this user) unless this process is root."""
    options: str
    """The server settings `pg_ctl start` passes (port, loopback, no durability)."""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def new_database(self) -> str:
        """A fresh empty database's URL, so that runs and tests share no state."""
        import psycopg

        name = "d_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url(), autocommit=True) as connection:
            connection.execute(f"CREATE DATABASE {name} TEMPLATE template0")
        return self.url(name)

    def pg_ctl(self, *args: str) -> None:
        """`pg_ctl` on the cluster, as its owner: `start` (with its settings and log), `stop`;
        raises ConfigurationError when it fails."""
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.folder / "data")]
        if "start" in args:
            command += ["-o", self.options, "-l", str(self.folder / "log")]
        _run([*command, *args], self.owner)


def _owner() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(SUPERUSER)
    except KeyError:
        raise ConfigurationError(
            "running as root and there is no 'postgres' user to run PostgreSQL as"
        ) from None
    return SUPERUSER


def _run(command: list[str], owner: str | None) -> None:
    full = ["runuser", "-u", owner, "--", *command] if owner else command
    done = subprocess.run(full, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ConfigurationError(
            f"{Path(command[0]).name} failed ({done.returncode}): {done.stderr.strip()[-500:]}"
        )


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """Start a cluster; stop it (fast shutdown) and delete its folder on exit. Raises
    ConfigurationError when PostgreSQL is not installed or does not start."""
    bin_dir = binaries()
    if bin_dir is None:
        raise ConfigurationError(
            "PostgreSQL is not installed (apt-get install postgresql; scripts/setup does)"
        )
    owner = _owner()
    folder = Path(tempfile.mkdtemp(prefix="diagnostics-pg-"))
    if owner:
        shutil.chown(folder, owner)
    port = _free_port()
    options = (
        f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={folder} "
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200"
    )
    cluster = Cluster(port, folder, bin_dir, owner, options)
    try:
        initdb = [str(bin_dir / "initdb"), "-D", str(folder / "data"), "-U", SUPERUSER]
        _run([*initdb, "--auth=trust", "--encoding=UTF8", "--no-sync"], owner)
        cluster.pg_ctl("-w", "-t", "60", "start")
        yield cluster
    finally:
        if (folder / "data" / "postmaster.pid").exists():
            with contextlib.suppress(ConfigurationError):  # stopping what may be gone already
                cluster.pg_ctl("-m", "fast", "stop")
        shutil.rmtree(folder, ignore_errors=True)
