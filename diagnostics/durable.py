"""Durable writes: a file or a folder appears complete under its final name, or not at all.

Every result, output and package is published this way so that a power cut or a crash never
leaves a half-written file that a later reader (an outbox row, a loader) would trust. The rule is
always the same: write under a temporary name, fsync the data, rename, fsync the parent folder.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


def fsync_path(path: Path) -> None:
    """Flush a file's or a folder's contents (for a folder: its entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_synced(path: Path, data: bytes) -> None:
    """Write `data` to `path` and flush it to disk (no rename: for a name nobody reads yet)."""
    with path.open("wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def replace_synced(partial: Path, path: Path) -> None:
    """Rename an already synced `partial` onto `path`, then make the rename itself durable."""
    os.replace(partial, path)
    fsync_path(path.parent)


def write_file(path: Path, data: bytes) -> Path:
    """Publish `data` at `path` atomically and durably."""
    partial = path.with_name(path.name + ".partial")
    try:
        write_synced(partial, data)
        replace_synced(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


def save_file(path: Path, write: Callable[[Path], None]) -> Path:
    """Publish what `write(partial_path)` writes at `path` atomically and durably (for writers
    that want a path of their own, such as pydicom's `save_as`)."""
    partial = path.with_name(path.name + ".partial")
    try:
        write(partial)
        fsync_path(partial)
        replace_synced(partial, path)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return path


@contextmanager
def staging_folder(out: Path) -> Iterator[Path]:
    """A private, empty sibling folder of `out` to fill; removed if the block fails or does not
    publish it. Being a sibling keeps the final rename on one filesystem (atomic)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield staging
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def publish_folder(staging: Path, out: Path, *, replace: bool = False) -> None:
    """Sync every file of `staging` and rename it to `out`.

    Without `replace`, `out` must not exist (or be an empty folder). With it, replacing takes two
    renames: a crash between them leaves the old and the new folder each complete (the old one in
    a hidden `.old` sibling), never a mix. Raises OSError when the rename fails; the old folder is
    then put back.
    """
    for child in staging.rglob("*"):
        if child.is_file():
            fsync_path(child)
    fsync_path(staging)
    retired = None
    if replace and out.is_dir() and any(out.iterdir()):
        retired = out.with_name(f".{out.name}.{uuid.uuid4().hex}.old")
        out.rename(retired)
    try:
        staging.rename(out)
    except OSError:
        if retired is not None:
            retired.rename(out)
        raise
    fsync_path(out.parent)
    if retired is not None:
        shutil.rmtree(retired, ignore_errors=True)
