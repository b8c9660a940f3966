"""Patient context in the store: header facts recorded at intake in every character set, found
by accession number, patient ID or name, and filled in by screening for studies received before
the table existed."""

from __future__ import annotations

import io
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import generate_uid

from diagnostics.results import InstanceResult, ModelRef, StudyResult
from diagnostics.store import Store
from diagnostics.store.priority import WorklistFilter
from diagnostics.store.sqlite import SqliteStore
from diagnostics.ui.patient import patient_context
from tests.helpers.synth import SynthStudies

MakeStore = Callable[..., Store]
"""`make_store(root)`: a store on the test's backend (SQLite, PostgreSQL: `database`)."""


def _instance(synth_studies: SynthStudies, **changes: object) -> tuple[str, bytes]:
    """A synthetic instance in a study of its own, with header changes (None deletes)."""
    folder, truths = synth_studies
    ds = pydicom.dcmread(folder / truths[0].file)
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    for key, value in changes.items():
        if value is None:
            delattr(ds, key)
        else:
            setattr(ds, key, value)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return str(ds.StudyInstanceUID), buffer.getvalue()


@pytest.mark.parametrize(
    ("charset", "name", "codec"),
    [
        ("ISO_IR 144", "Иванов^Иван^Петрович", "iso8859_5"),
        ("ISO_IR 192", "Ўзбеков^Шерзод", "utf-8"),
        (["", "ISO 2022 IR 144"], "Смирнова^Анна", None),
    ],
)
def test_names_in_other_character_sets_read_correctly(
    make_store: MakeStore,
    tmp_path: Path,
    synth_studies: SynthStudies,
    charset: object,
    name: str,
    codec: str | None,
) -> None:
    study, data = _instance(
        synth_studies, SpecificCharacterSet=charset, PatientName=name, StudyDescription="Грудь"
    )
    if codec is not None:  # the file really holds the name in that character set
        assert name.split("^")[0].encode(codec) in data
    store = make_store(tmp_path)
    store.receive(data, "test")
    facts = store.study_facts([study])[study]
    assert facts.patient_name == name and facts.description == "Грудь"
    shown = patient_context(study, facts, None)
    family, given, *rest = name.split("^")
    assert shown.name == f"{family}, {' '.join([given, *rest])}"
    total, rows = store.worklist(where=WorklistFilter(search=family.upper()))
    assert total == 1 and rows[0].study_instance_uid == study


def test_search_by_accession_patient_id_or_name(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies
) -> None:
    store = make_store(tmp_path)
    wanted, data = _instance(
        synth_studies, AccessionNumber="ACC-7731", PatientID="PID-0042", PatientName="Doe^Jane"
    )
    store.receive(data, "test")
    for accession in ("ACC-7732", "ACC-77310"):  # near misses
        store.receive(_instance(synth_studies, AccessionNumber=accession)[1], "test")
    for text in ("ACC-7731", "acc-7731", " PID-0042 ", "jane", "doe jane", "Jane^Doe"):
        total, rows = store.worklist(where=WorklistFilter(search=text))
        assert (total, [r.study_instance_uid for r in rows]) == (1, [wanted]), text
    assert store.worklist(where=WorklistFilter(search="ACC-773"))[0] == 0
    assert store.worklist(where=WorklistFilter(search="jane smith"))[0] == 0
    assert store.worklist(where=WorklistFilter(search="acc-7731", read=True))[0] == 0


def test_empty_type_2_values_are_none_and_views_collect(
    make_store: MakeStore, tmp_path: Path, synth_studies: SynthStudies
) -> None:
    store = make_store(tmp_path)
    study, first = _instance(
        synth_studies, PatientName="", AccessionNumber="", PatientAge=None, PatientSex=""
    )
    store.receive(first, "test")
    ds = pydicom.dcmread(io.BytesIO(first))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.ViewPosition, ds.AccessionNumber = "LL", "LATE-1"
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    store.receive(buffer.getvalue(), "test")
    facts = store.study_facts([study])[study]
    assert facts.patient_name is None and facts.sex is None
    assert facts.accession_number == "LATE-1"  # the first non-empty value
    assert facts.views == ("PA", "LL") and facts.modalities == ("DX",)
    shown = patient_context(study, facts, "https://pacs/v?a={accession}&s={study_uid}")
    assert shown.name is None and shown.sex_age is not None  # age from the birth and study dates
    assert shown.exam == "DX PA, LL" and shown.study_date and "-" in shown.study_date
    assert shown.viewer_url == f"https://pacs/v?a=LATE-1&s={study}"


def test_an_older_store_gets_the_table_and_screening_fills_it(
    tmp_path: Path, synth_studies: SynthStudies
) -> None:
    study, data = _instance(synth_studies, AccessionNumber="OLD-1")
    SqliteStore(tmp_path).receive(data, "test")
    with sqlite3.connect(tmp_path / "intake.sqlite3") as db:  # as a store before this table
        db.execute("DROP TABLE study_headers")
    store = SqliteStore(tmp_path)
    assert store.study_facts([study]) == {}
    (claim,) = store.claim_due(stable_s=0)
    result = StudyResult(
        study_instance_uid=study,
        status="not_analyzed",
        reason="test",
        model=ModelRef(name="m", version="1.0.0", sha256="0" * 64),
        instances=[InstanceResult(sop_instance_uid="1.2", status="not_analyzed", reason="t")],
    )
    assert store.complete(claim, result) == 1
    assert store.study_facts([study])[study].accession_number == "OLD-1"
    assert store.worklist(where=WorklistFilter(search="old-1"))[0] == 1


def _damaged() -> pydicom.Dataset:
    """A header pydicom must repair: an unknown character set and bytes no charset reads."""
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds = pydicom.Dataset()
    ds.SpecificCharacterSet = "ISO_IR 999"
    for tag, vr, value in ((0x00100010, "PN", b"\xff\xfeDOE^JANE"), (0x00081030, "LO", b"\xff")):
        ds[tag] = RawDataElement(Tag(tag), vr, len(value), value, 0, True, True)  # type: ignore[assignment]
    return ds


def test_reading_headers_on_many_threads_leaves_the_warning_filters_alone() -> None:
    """Intake threads (C-STORE and HTTP) read headers at once. Each read records pydicom's
    warnings in a block (`dicom.warn.recorded_warnings`) that swaps the process-wide filters;
    the blocks hold one lock, so interleaved reads never leave the filters altered."""
    import threading
    import warnings

    from diagnostics.dicom.patient import study_header

    before, snapshot = warnings.filters, list(warnings.filters)
    swapped: list[bool] = []

    class Watched(pydicom.Dataset):
        def get(self, *args: object, **kwargs: object) -> object:
            swapped.append(warnings.filters is not before)
            return super().get(*args, **kwargs)  # type: ignore[arg-type]

    def read() -> None:
        for _ in range(100):
            ds = _damaged()
            ds.__class__ = Watched
            header = study_header(ds)
            assert header.patient_name is not None and header.description is not None

    threads = [threading.Thread(target=read) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert swapped  # every read went through the watched dataset
    assert warnings.filters is before and warnings.filters == snapshot
