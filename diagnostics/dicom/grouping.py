"""Group instances into studies and series, and gather DICOM files from paths.

Grouping is by UID only (never by file location), so files from any folder layout, any order,
or any mix of senders end up in the right study. Duplicate SOP Instance UIDs are kept once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

from diagnostics.dicom.header import ReadLimits
from diagnostics.dicom.image import HasUids, InstanceInfo, InstanceUids
from diagnostics.dicom.reader import read_info
from diagnostics.errors import InputError

log = logging.getLogger(__name__)

T = TypeVar("T", bound=HasUids)


@dataclass
class Series(Generic[T]):
    series_instance_uid: str
    instances: list[T] = field(default_factory=list)


@dataclass
class Study(Generic[T]):
    study_instance_uid: str
    patient_id: str
    series: dict[str, Series[T]] = field(default_factory=dict)
    duplicates: int = 0
    """How many instances repeated a SOP Instance UID already in the study (kept once)."""

    @property
    def instances(self) -> list[T]:
        return [item for s in self.series.values() for item in s.instances]


def group_studies(items: Iterable[T]) -> list[Study[T]]:
    """Group by Study then Series Instance UID, in order of first appearance."""
    studies: dict[str, Study[T]] = {}
    seen: set[tuple[str, str]] = set()
    for item in items:
        uids = item.uids
        study = studies.get(uids.study_instance_uid)
        if study is None:
            study = Study(uids.study_instance_uid, uids.patient_id)
            studies[uids.study_instance_uid] = study
        elif study.patient_id != uids.patient_id:
            log.warning(
                "study %s holds instances with different patient IDs", uids.study_instance_uid
            )
        key = (uids.study_instance_uid, uids.sop_instance_uid)
        if key in seen:
            study.duplicates += 1
            continue
        seen.add(key)
        series = study.series.setdefault(uids.series_instance_uid, Series(uids.series_instance_uid))
        series.instances.append(item)
    return list(studies.values())


@dataclass(frozen=True)
class FileInfo:
    """A file's path beside its validated header, so it can be decoded later."""

    path: Path
    info: InstanceInfo

    @property
    def uids(self) -> InstanceUids:
        return self.info.uids


def iter_files(paths: Sequence[str | Path]) -> Iterator[Path]:
    """Every file under the given files and folders, in sorted order, hidden ones skipped."""
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                hidden = any(p.startswith(".") for p in child.relative_to(path).parts)
                if child.is_file() and not hidden:
                    yield child
        else:
            yield path


def scan(
    paths: Sequence[str | Path], limits: ReadLimits | None = None
) -> tuple[list[Study[FileInfo]], list[tuple[Path, InputError]]]:
    """Read the headers of all files under `paths`; return studies and the files refused, with why.

    Files that are not DICOM at all (a labels.csv beside the images, say) are reported like any
    other refusal, so the caller decides whether they matter.
    """
    found: list[FileInfo] = []
    refused: list[tuple[Path, InputError]] = []
    for path in iter_files(paths):
        try:
            found.append(FileInfo(path, read_info(path, limits)))
        except InputError as exc:
            refused.append((path, exc))
    return group_studies(found), refused
