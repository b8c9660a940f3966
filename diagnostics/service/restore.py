"""`diagnostics restore`: a verified backup back into a storage folder the service can open.

Nothing is restored from a backup that is not exactly what its manifest lists: every file is
copied into a staging folder inside the target while its size and SHA-256 are checked, and only
when all of them match (and SQLite finds the databases sound) do the copies move into place, the
store's database last. A folder a running service holds (its lead process's lock) is always
refused: replacing a live store under it would corrupt it. A non-empty folder is refused unless
`force`, and then its old contents are moved aside into `pre-restore-<time>/`, never deleted.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from diagnostics.constants import DATABASE_FILE, LEAD_LOCK_FILE
from diagnostics.durable import fsync_path
from diagnostics.errors import BackupError, ConfigurationError
from diagnostics.service.backup import (
    MANIFEST_FILE,
    BackupFile,
    Manifest,
    audit_maintenance,
    copy_file,
    hash_file,
    read_manifest,
)
from diagnostics.store import check_database, relocate_outputs, store_exists
from diagnostics.store.audit import SUCCESS

STAGING_PREFIX = ".restore-"


@dataclass(frozen=True)
class RestoreSummary:
    storage: Path
    files: int
    bytes: int
    backup_started: str
    moved_aside: Path | None

    def as_dict(self) -> dict[str, object]:
        return {
            "storage": str(self.storage),
            "files": self.files,
            "bytes": self.bytes,
            "backup_started": self.backup_started,
            "moved_aside": None if self.moved_aside is None else str(self.moved_aside),
        }


def verify(folder: Path) -> Manifest:
    """Check a backup in place: the manifest, and every file's presence, size and SHA-256."""
    manifest = read_manifest(folder)
    problems = []
    for item in manifest.files:
        path = folder / item.path
        if not path.is_file():
            problems.append(f"{item.path} is missing")
            continue
        size, digest = hash_file(path)
        problem = _mismatch(item, size, digest)
        if problem is not None:
            problems.append(problem)
    _refuse(problems)
    for item in manifest.files:
        if item.kind == "database":
            check_database(folder / item.path)
    return manifest


def restore(folder: Path, storage: Path, *, force: bool = False) -> RestoreSummary:
    """Restore the backup `folder` into `storage` (created if missing)."""
    manifest = read_manifest(folder)
    if storage.resolve().is_relative_to(folder.resolve()):
        raise ConfigurationError(f"--storage {storage}: inside the backup folder; give another")
    if DATABASE_FILE not in {f.path for f in manifest.files}:
        raise BackupError(f"{MANIFEST_FILE}: lists no {DATABASE_FILE}; not a store backup")
    storage.mkdir(parents=True, exist_ok=True)
    with _locked(storage):
        present = [e for e in storage.iterdir() if e.name != LEAD_LOCK_FILE]
        present = [e for e in present if not e.name.startswith(STAGING_PREFIX)]
        if present and not force:
            raise ConfigurationError(
                f"--storage {storage}: not empty; restore into a new folder, or give --force "
                "to move its contents aside (into pre-restore-<time>/)"
            )
        staging = storage / f"{STAGING_PREFIX}{uuid.uuid4().hex}"
        staging.mkdir(mode=0o700)
        try:
            total = _stage(folder, manifest, staging, storage.resolve())
            aside = _move_aside(storage, present) if present else None
            _publish(staging, storage)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    audit_maintenance(
        storage,
        "restore",
        outcome=SUCCESS,
        backup=folder.resolve().name,
        backup_started=manifest.started,
        files=len(manifest.files),
        bytes=total,
        moved_aside=aside is not None,
    )
    return RestoreSummary(storage, len(manifest.files), total, manifest.started, aside)


def _stage(folder: Path, manifest: Manifest, staging: Path, root: Path) -> int:
    """Copy every listed file into `staging`, checking it as it is copied; refuse the whole
    restore, naming each bad file, when any does not match."""
    problems = []
    total = 0
    for item in manifest.files:
        try:
            size, digest = copy_file(folder / item.path, staging / item.path)
        except FileNotFoundError:
            problems.append(f"{item.path} is missing")
            continue
        total += size
        problem = _mismatch(item, size, digest)
        if problem is not None:
            problems.append(problem)
    _refuse(problems)
    for item in manifest.files:
        if item.kind == "database":
            check_database(staging / item.path)
    moved = {f.recorded: str(root / f.path) for f in manifest.files if f.recorded is not None}
    if moved:
        relocate_outputs(staging / DATABASE_FILE, moved)
    for child in sorted({p.parent for p in staging.rglob("*") if p.is_file()}):
        fsync_path(child)
    return total


def _refuse(problems: list[str]) -> None:
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise BackupError(f"the backup was altered or damaged: {shown}{more}; nothing restored")


def _move_aside(storage: Path, entries: list[Path]) -> Path:
    aside = storage / time.strftime("pre-restore-%Y%m%dT%H%M%SZ", time.gmtime())
    aside.mkdir(mode=0o700)
    for entry in entries:
        entry.rename(aside / entry.name)
    fsync_path(aside)
    fsync_path(storage)
    return aside


def _publish(staging: Path, storage: Path) -> None:
    """Move the staged entries into place, the store's database last: until it is there the
    folder holds no store, and a service started meanwhile would create an empty one rather
    than open half a restore."""
    entries = sorted(staging.iterdir(), key=lambda e: e.name == DATABASE_FILE)
    for entry in entries:
        os.replace(entry, storage / entry.name)
    fsync_path(storage)
    if not store_exists(storage):
        raise BackupError(f"{DATABASE_FILE} was not restored")


@contextmanager
def _locked(storage: Path) -> Iterator[IO[str]]:
    """Hold the storage folder's service lock for the restore; refuse if a service holds it."""
    handle = (storage / LEAD_LOCK_FILE).open("a")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise ConfigurationError(
                f"--storage {storage}: a running service holds this folder; stop it first "
                "(restoring under a running service would corrupt its store)"
            ) from None
        yield handle
    finally:
        handle.close()


def _mismatch(item: BackupFile, size: int, digest: str) -> str | None:
    """How a copied file differs from what the manifest recorded, if it does."""
    if size != item.size:
        return f"{item.path} has {size} bytes, the manifest says {item.size}"
    if digest != item.sha256:
        return f"{item.path} does not match its SHA-256 in the manifest"
    return None
