"""`diagnostics backup`: a consistent copy of a storage folder while the service runs.

The databases are copied first with SQLite's online backup (`diagnostics.store.copy_database`),
each one consistent snapshot; then exactly the files the copied store database refers to (its
instances, the outputs its outbox names), read from the copy. A file written after the snapshot
is not needed by it; a file the snapshot names that is gone by the time it is copied (purged by
retention) is listed as missing, not silently dropped. The backup folder mirrors the storage
folder, so a restore is a verified copy back.

`manifest.json` (time, versions, schema, every file with its size and SHA-256) is written last
and durably: a folder without it is an interrupted backup, and `restore` says so.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import platform
import sqlite3
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import Final, Literal

from pydantic import ValidationError, field_validator

import diagnostics
from diagnostics.constants import DATABASE_FILE, LEAD_LOCK_FILE
from diagnostics.durable import fsync_path, write_file
from diagnostics.errors import BackupError, ConfigurationError
from diagnostics.store import (
    DATABASES,
    copy_database,
    describe,
    open_store,
    references,
    store_exists,
)
from diagnostics.store.audit import SERIOUS_FAILURE, SUCCESS
from diagnostics.strict import StrictModel

MANIFEST_FILE = "manifest.json"
FORMAT: Final = "diagnostics-backup/1"
SESSION_KEY_FILE = "ui-session.key"
"""The UI's session key (`diagnostics.api.session.KEY_FILE`; a test keeps the two equal)."""
CHUNK = 1 << 20

TRANSIENT: dict[str, str] = {
    "bentoml": "BentoML's working folder and the per-worker metrics files, emptied at every start",
    "incoming": "partial uploads not yet acknowledged; the sender retries them",
    LEAD_LOCK_FILE: "the running service's lock, meaningless in a copy",
    "models": "the model registry (packages, registry.json, shadow results): not copied yet; "
    "keep the package folders you install (docs/deploy.md, Model versions)",
}
"""Storage entries a backup leaves out on purpose, with the reason the manifest gives."""
for _db in DATABASES:
    for _suffix in ("-wal", "-shm", "-journal"):
        TRANSIENT[_db + _suffix] = "SQLite's log of the live database, already in the online copy"

COPIED_FOLDERS = ("instances", "results")
"""Folders whose files are copied when, and only when, the store database refers to them."""


Kind = Literal["database", "key", "instance", "output"]


class BackupFile(StrictModel):
    path: str
    """Relative to the storage folder (and to the backup folder, which mirrors it)."""
    size: int
    sha256: str
    kind: Kind
    recorded: str | None = None
    """An output's path as its outbox row recorded it (restore points the row at the copy)."""

    @field_validator("path")
    @classmethod
    def _relative(cls, value: str) -> str:
        parts = PurePosixPath(value).parts
        if not parts or value.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise ValueError(f"not a path inside the backup: {value!r}")
        return value


class Left(StrictModel):
    path: str
    reason: str


class Manifest(StrictModel):
    format: Literal["diagnostics-backup/1"]
    started: str
    finished: str
    diagnostics_version: str
    python: str
    sqlite: str
    host: str
    storage: str
    """The storage folder it was taken from (absolute)."""
    databases: dict[str, dict[str, dict[str, object]]]
    """Per database: each table's columns and row count at the snapshot."""
    files: list[BackupFile]
    missing: list[Left]
    """Named by the snapshot but gone when copied (purged meanwhile): not in the backup."""
    skipped: list[Left]
    """Entries of the storage folder left out on purpose, and why."""


@dataclass
class BackupSummary:
    out: Path
    files: int
    bytes: int
    missing: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, object]:
        return {
            "backup": str(self.out),
            "files": self.files,
            "bytes": self.bytes,
            "missing": self.missing,
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
        }


def actor() -> str:
    """Who ran a maintenance command, as the audit trail records it."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return f"cli:uid-{os.getuid()}"


def backup(storage: Path, out: Path) -> BackupSummary:
    """Back up `storage` into the new folder `out`; audited in the store it copies."""
    if not store_exists(storage):
        raise ConfigurationError(f"--storage {storage}: no store there (nothing to back up)")
    if out.resolve().is_relative_to(storage.resolve()):
        raise ConfigurationError(
            f"--out {out}: inside the storage folder; give a folder outside it"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigurationError(f"--out {out}: exists and is not empty; give a new folder")
    start = time.monotonic()
    try:
        manifest = _take(storage.resolve(), out)
    except (BackupError, OSError) as exc:
        audit_maintenance(storage, "backup", outcome=SERIOUS_FAILURE, error=type(exc).__name__)
        raise
    summary = BackupSummary(
        out,
        files=len(manifest.files),
        bytes=sum(f.size for f in manifest.files),
        missing=[m.path for m in manifest.missing],
        skipped=[s.path for s in manifest.skipped],
        seconds=time.monotonic() - start,
    )
    audit_maintenance(
        storage,
        "backup",
        outcome=SUCCESS,
        backup=out.resolve().name,
        started=manifest.started,
        files=summary.files,
        bytes=summary.bytes,
        missing=len(summary.missing),
    )
    return summary


def _take(storage: Path, out: Path) -> Manifest:
    started = _now()
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    files: list[BackupFile] = []
    schema: dict[str, dict[str, dict[str, object]]] = {}
    for name in DATABASES:  # the store's database first: it decides which files are needed
        if not (storage / name).is_file():
            continue
        copy_database(storage / name, out / name)
        fsync_path(out / name)
        schema[name] = describe(out / name)
        files.append(_entry(out / name, name, "database"))
    refs = references(out / DATABASE_FILE)
    missing: list[Left] = []
    skipped: list[Left] = []
    wanted: list[tuple[str, Kind, str | None]] = [
        (f"instances/{path}", "instance", None) for path in refs.instances
    ]
    for output in refs.outputs:
        inside = _inside(storage, output)
        if inside is None:
            skipped.append(Left(path=output, reason="an output outside the storage folder"))
        else:
            wanted.append((inside, "output", output))
    if (storage / SESSION_KEY_FILE).is_file():
        wanted.append((SESSION_KEY_FILE, "key", None))
    for relative, kind, recorded in wanted:
        try:
            size, digest = copy_file(storage / relative, out / relative)
        except FileNotFoundError:
            missing.append(Left(path=relative, reason="named by the snapshot, gone when copied"))
            continue
        files.append(
            BackupFile(path=relative, size=size, sha256=digest, kind=kind, recorded=recorded)
        )
    for folder in {str(PurePosixPath(f.path).parent) for f in files}:
        fsync_path(out / folder)
    skipped += _left_out(storage)
    manifest = Manifest(
        format=FORMAT,
        started=started,
        finished=_now(),
        diagnostics_version=diagnostics.__version__,
        python=platform.python_version(),
        sqlite=sqlite3.sqlite_version,
        host=platform.node(),
        storage=str(storage),
        databases=schema,
        files=files,
        missing=missing,
        skipped=skipped,
    )
    write_file(out / MANIFEST_FILE, (manifest.model_dump_json(indent=2) + "\n").encode())
    return manifest


def _inside(storage: Path, recorded: str) -> str | None:
    """An outbox path relative to the storage folder, or None when it lies outside."""
    try:
        relative = Path(recorded).resolve().relative_to(storage)
    except (ValueError, OSError):
        return None
    return relative.as_posix() if relative.parts else None


def _left_out(storage: Path) -> list[Left]:
    out = []
    known = {*DATABASES, SESSION_KEY_FILE, *COPIED_FOLDERS}
    for entry in sorted(storage.iterdir()):
        if entry.name in known:
            continue
        reason = TRANSIENT.get(entry.name, "not part of the store (unknown to this version)")
        out.append(Left(path=entry.name, reason=reason))
    out.append(
        Left(
            path="instances, results",
            reason="files the database snapshot does not refer to (written after it, or "
            "outputs never queued for delivery)",
        )
    )
    return out


def copy_file(source: Path, target: Path) -> tuple[int, str]:
    """Copy one file, flushed to disk; returns the size and SHA-256 of the bytes written."""
    digest = hashlib.sha256()
    size = 0
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    with source.open("rb") as src, target.open("xb") as dst:
        os.chmod(target, 0o600)
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            dst.write(chunk)
            size += len(chunk)
        dst.flush()
        os.fsync(dst.fileno())
    return size, digest.hexdigest()


def _entry(path: Path, relative: str, kind: Literal["database", "key"]) -> BackupFile:
    size, digest = hash_file(path)
    os.chmod(path, 0o600)
    return BackupFile(path=relative, size=size, sha256=digest, kind=kind)


def hash_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def read_manifest(folder: Path) -> Manifest:
    """The manifest of a complete backup; `BackupError` for a folder that is not one."""
    if not folder.is_dir():
        raise BackupError(f"{folder}: no such backup folder")
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise BackupError(
            f"{folder}: no {MANIFEST_FILE}: an incomplete backup (interrupted before it "
            "finished) or not a backup folder; take a new backup"
        )
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(p) for p in problem["loc"])
        raise BackupError(
            f"{MANIFEST_FILE}: altered or not a backup manifest ({where}: {problem['msg']})"
        ) from None


def audit_maintenance(storage: Path, action: str, **detail: object) -> None:
    """One audit row for a maintenance command, in the store of `storage`."""
    store = open_store(storage)
    try:
        store.audit(actor(), action, **detail)
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
