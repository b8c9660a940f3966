"""Fixtures for the report tests: one case per source kind, and its reports written once
(the cases themselves are built by `cases.py`; the package is the root conftest's `bundled`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from diagnostics.dicom import read_instance
from diagnostics.package import ModelPackage
from diagnostics.reports import write_reports
from tests.reports.cases import (
    PROBABILITIES,
    SOURCES,
    Case,
    Written,
    make_outcome,
    write_source,
)


@pytest.fixture(scope="session")
def source_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("report-sources")
    return {
        name: write_source(folder, index, photometric, syntax)
        for index, (name, (photometric, syntax)) in enumerate(SOURCES.items())
    }


@pytest.fixture(scope="session", params=sorted(SOURCES))
def case(
    request: pytest.FixtureRequest, source_files: dict[str, Path], bundled: ModelPackage
) -> Case:
    path = source_files[request.param]
    outcome = make_outcome(read_instance(path), bundled, PROBABILITIES)
    return Case(outcome=outcome, sources=(path,), package=bundled)


@pytest.fixture(scope="session")
def written(case: Case, tmp_path_factory: pytest.TempPathFactory) -> Written:
    out = tmp_path_factory.mktemp("reports")
    reports = write_reports(case.outcome, out)
    assert reports.failures == []
    paths = reports.paths
    folder = out / case.outcome.result.study_instance_uid
    return Written(
        case=case,
        paths=paths,
        sr=folder / "SR.dcm",
        overlay=folder / "OV-0001.dcm",
        state=folder / "PR-0001.dcm",
    )
