"""Instances are grouped into studies and series by UID alone, whatever order they come in.

Senders deliver files in any order and folder layout, sometimes twice; grouping must put each
instance in its study and series exactly once, and `scan` must report (not hide) the files it
could not read, such as the labels.csv that sits beside synthetic studies.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from diagnostics.dicom import InstanceInfo, group_studies, read_info, scan
from diagnostics.errors import InputError, NotDicomError
from tests.dicom.corpus import dx_dataset, phantom, uid

LAYOUT = {
    ("study-a", "series-a1"): ("a1-1", "a1-2"),
    ("study-a", "series-a2"): ("a2-1",),
    ("study-b", "series-b1"): ("b1-1", "b1-2", "b1-3"),
}
"""Two studies, three series, six instances."""


def _expected() -> dict[str, dict[str, set[str]]]:
    expected: dict[str, dict[str, set[str]]] = {}
    for (study, series), instances in LAYOUT.items():
        expected.setdefault(uid(study), {})[uid(series)] = {uid(i) for i in instances}
    return expected


def _write_instances(folder: Path) -> list[Path]:
    """One file per instance, named so that sorted order interleaves the studies."""
    paths = []
    names = [(s, r, i) for (s, r), instances in LAYOUT.items() for i in instances]
    for number, (study, series, instance) in enumerate(random.Random(5).sample(names, len(names))):
        ds = dx_dataset(phantom(), study=study, series=series, instance=instance)
        path = folder / f"{number:02d}-{instance}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def instance_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return _write_instances(tmp_path_factory.mktemp("grouping"))


def _grouped(items: list[InstanceInfo]) -> dict[str, dict[str, set[str]]]:
    return {
        study.study_instance_uid: {
            series.series_instance_uid: {item.uids.sop_instance_uid for item in series.instances}
            for series in study.series.values()
        }
        for study in group_studies(items)
    }


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_grouping_does_not_depend_on_order(instance_files: list[Path], seed: int) -> None:
    infos = [read_info(path) for path in instance_files]
    random.Random(seed).shuffle(infos)
    assert _grouped(infos) == _expected()


def test_duplicate_instances_are_kept_once_and_counted(instance_files: list[Path]) -> None:
    infos = [read_info(path) for path in instance_files]
    repeated = infos + infos[:2]
    studies = group_studies(repeated)
    assert sum(len(study.instances) for study in studies) == len(infos)
    assert sum(study.duplicates for study in studies) == 2
    assert _grouped(repeated) == _expected()


def test_studies_keep_their_patient(instance_files: list[Path]) -> None:
    studies = group_studies([read_info(path) for path in instance_files])
    assert {study.patient_id for study in studies} == {"CORPUS-1"}


def test_scan_groups_a_folder_and_reports_what_it_refused(
    instance_files: list[Path], tmp_path: Path
) -> None:
    """A nested copy, a duplicate, labels.csv and a hidden file: as an ingest folder looks."""
    nested = tmp_path / "incoming" / "nested"
    nested.mkdir(parents=True)
    for path in instance_files:
        (nested / path.name).write_bytes(path.read_bytes())
    (tmp_path / "incoming" / "again.dcm").write_bytes(instance_files[0].read_bytes())
    (tmp_path / "incoming" / "labels.csv").write_text("study,finding\n1,0\n")
    (tmp_path / "incoming" / ".DS_Store").write_bytes(b"\0" * 64)
    studies, refused = scan([tmp_path / "incoming"])
    grouped = {
        s.study_instance_uid: {
            r.series_instance_uid: {f.uids.sop_instance_uid for f in r.instances}
            for r in s.series.values()
        }
        for s in studies
    }
    assert grouped == _expected()
    assert sum(study.duplicates for study in studies) == 1
    assert [(path.name, type(error)) for path, error in refused] == [("labels.csv", NotDicomError)]


def test_scan_keeps_the_path_of_each_instance(instance_files: list[Path]) -> None:
    studies, refused = scan(instance_files)
    assert not refused
    found = {item.path for study in studies for item in study.instances}
    assert found == set(instance_files)


def test_scan_reports_a_missing_file(tmp_path: Path) -> None:
    studies, refused = scan([tmp_path / "absent.dcm"])
    assert studies == []
    assert len(refused) == 1
    path, error = refused[0]
    assert path.name == "absent.dcm"
    assert isinstance(error, InputError)
    assert "no such file" in str(error)
