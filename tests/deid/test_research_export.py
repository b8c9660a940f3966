"""A research export from a real intake store: nothing planted survives, references still resolve.

The store is filled the way the service fills it (`SqliteStore.receive`, then a screening
result and radiologist feedback), from synthetic radiographs carrying planted identifying
values in every place the profile covers (`phi.py`). The exports are then read back as raw
bytes and as datasets, with and without --shift-dates.
"""

from __future__ import annotations

import copy
import json
import sqlite3
import subprocess
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ImplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from diagnostics.deid import ExportOptions, Keys, export_research
from diagnostics.deid import research_export as export_module
from diagnostics.errors import ConfigurationError
from diagnostics.results import FindingResult, InstanceResult, ModelRef, StudyResult
from diagnostics.store.sqlite import SqliteStore
from diagnostics.synth import SynthConfig, generate
from tests.deid import phi

DCIODVFY = Path("/usr/bin/dciodvfy")
INTERVAL_DAYS = 70


@dataclass
class World:
    store: Path
    salt: Path
    plain: Path
    shifted: Path
    a: Dataset
    b: Dataset
    realistic: Dataset
    later: Dataset
    secondary_capture: Dataset
    burned_in: Dataset
    originals: list[bytes]


def _read(path: Path) -> Dataset:
    return pydicom.dcmread(path)


def _save(ds: Dataset, path: Path) -> bytes:
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def _realistic(ds: Dataset) -> None:
    """Identifying values a real radiograph carries, in places valid for its IOD."""
    ds.InstitutionName = "St Elsewhere Hospital"
    ds.InstitutionAddress = "1 Hospital Road"
    ds.StationName = "XR-ROOM-3"
    ds.OperatorsName = "Smith^Jane"
    ds.ReferringPhysicianName = "Who^Doctor"
    ds.AccessionNumber = "ACC123456"
    ds.StudyID = "S-778"
    ds.PatientAge = "054Y"
    ds.PatientBirthDate = "19700212"
    ds.DeviceSerialNumber = "SN-0042"
    ds.ProtocolName = "CHEST PA Jane"
    ds.OtherPatientIDsSequence = Sequence([Dataset()])
    ds.OtherPatientIDsSequence[0].PatientID = "OTHER-999"
    ds.OtherPatientIDsSequence[0].TypeOfPatientID = "TEXT"
    request = Dataset()
    request.AccessionNumber = "ACC123456"
    request.RequestedProcedureID = "RP-55"
    request.ScheduledProcedureStepID = "SPS-55"
    ds.RequestAttributesSequence = Sequence([request])
    ds.FrameOfReferenceUID = generate_uid()
    ds.PositionReferenceIndicator = ""
    block = ds.private_block(0x0019, "ACME 1.0", create=True)
    block.add_new(0x10, "LO", "Jane Smith")


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("deid-export")
    generate(root / "synth", 3, 11, SynthConfig(rows=256, columns=256, spacing_mm=1.6))
    sources = sorted((root / "synth").rglob("*.dcm"))
    one, two, three = (_read(p) for p in sources)
    originals = [
        str(value).encode()
        for ds in (one, two, three)
        for value in (ds.PatientID, ds.PatientName, ds.StudyInstanceUID, ds.SOPInstanceUID)
    ]

    a = copy.deepcopy(one)
    phi.plant(a, variant=1)
    b = copy.deepcopy(one)
    phi.plant(b, variant=2)
    b.StudyInstanceUID = a.StudyInstanceUID
    b.FrameOfReferenceUID = a.FrameOfReferenceUID
    b.ReferencedImageSequence[0].ReferencedSOPInstanceUID = a.SOPInstanceUID  # SR-like link
    b.SourceImageSequence[0].ReferencedSOPInstanceUID = a.SOPInstanceUID

    realistic = copy.deepcopy(two)
    _realistic(realistic)
    later = copy.deepcopy(three)  # the same patient as `realistic`, 70 days later
    _realistic(later)
    later.PatientID, later.PatientName = realistic.PatientID, realistic.PatientName
    first = date.fromisoformat(realistic.StudyDate[:4] + "-" + realistic.StudyDate[4:6] + "-01")
    realistic.StudyDate = realistic.ContentDate = first.strftime("%Y%m%d")
    later.StudyDate = later.ContentDate = (first + timedelta(INTERVAL_DAYS)).strftime("%Y%m%d")

    secondary_capture = copy.deepcopy(three)
    secondary_capture.SOPClassUID = SecondaryCaptureImageStorage
    secondary_capture.SOPInstanceUID = generate_uid()
    secondary_capture.ConversionType = "WSD"
    del secondary_capture.BurnedInAnnotation
    burned_in = copy.deepcopy(three)
    burned_in.SOPInstanceUID = generate_uid()
    burned_in.BurnedInAnnotation = "YES"

    store = SqliteStore(root / "store")
    instances = {
        "a": a,
        "b": b,
        "realistic": realistic,
        "later": later,
        "sc": secondary_capture,
        "yes": burned_in,
    }
    for name, ds in instances.items():
        store.receive(_save(ds, root / f"{name}.dcm"), "test")
        instances[name] = _read(root / f"{name}.dcm")

    claim = store.claim_study(a.StudyInstanceUID)
    assert claim is not None
    result = StudyResult(
        study_instance_uid=a.StudyInstanceUID,
        status="analyzed",
        priority="urgent",
        model=ModelRef(name="cxr-demo", version="1.0.0", sha256="0" * 64),
        findings=[
            FindingResult(
                code="nodule",
                display="Lung nodule",
                probability=0.9,
                threshold=0.5,
                flagged=True,
                sop_instance_uid=a.SOPInstanceUID,
                bbox=(1, 2, 30, 40),
            )
        ],
        instances=[
            InstanceResult(sop_instance_uid=a.SOPInstanceUID, status="analyzed"),
            InstanceResult(
                sop_instance_uid=b.SOPInstanceUID,
                status="not_analyzed",
                reason=f"instance {b.SOPInstanceUID} of {a.StudyInstanceUID} is out of scope",
            ),
        ],
        created="2024-03-01T10:00:00+00:00",
    )
    assert store.complete(claim, result) == 1
    store.close()
    # The store creates the review UI's feedback table; it is replaced here by one with columns
    # the export must pseudonymise (user) or drop (ward), whatever a future version adds.
    with sqlite3.connect(root / "store" / "intake.sqlite3") as db:
        db.execute("DROP TABLE feedback")
        db.execute(
            "CREATE TABLE feedback (id INTEGER PRIMARY KEY, study_instance_uid TEXT, "
            "sop_instance_uid TEXT, code TEXT, verdict TEXT, comment TEXT, user TEXT, "
            "created REAL, box TEXT, ward TEXT)"
        )
        db.execute(
            "INSERT INTO feedback (study_instance_uid, sop_instance_uid, code, verdict, comment,"
            " user, created, box, ward) VALUES (?, ?, 'nodule', 'disagree', ?, ?, ?, ?, ?)",
            (
                a.StudyInstanceUID,
                a.SOPInstanceUID,
                "PHI9601 looks like Mr PHI9602's old scar",
                "PHI9603",
                1709287200.0,
                "[1, 2, 30, 40]",
                "PHI9604",
            ),
        )

    salt = root / "secret" / "salt"
    salt.parent.mkdir()
    plain, shifted = root / "export-plain", root / "export-shifted"
    export_research(ExportOptions(root / "store", plain, salt_file=salt))
    export_research(ExportOptions(root / "store", shifted, shift_dates=True, salt_file=salt))
    return World(
        root / "store",
        salt,
        plain,
        shifted,
        a=instances["a"],
        b=instances["b"],
        realistic=instances["realistic"],
        later=instances["later"],
        secondary_capture=instances["sc"],
        burned_in=instances["yes"],
        originals=originals,
    )


def _exported(out: Path) -> dict[str, Dataset]:
    """Exported datasets by SOP Instance UID."""
    found = {}
    for path in sorted((out / "studies").rglob("*.dcm")):
        ds = pydicom.dcmread(path)
        found[str(ds.SOPInstanceUID)] = ds
    return found


def _mapped(world: World, ds: Dataset) -> Dataset:
    keys = Keys.from_file(world.salt)
    return _exported(world.plain)[keys.uid(ds.SOPInstanceUID)]


def _jsonl(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("which", ["plain", "shifted"])
def test_no_planted_value_survives_anywhere_in_the_output(world: World, which: str) -> None:
    out = world.plain if which == "plain" else world.shifted
    files = sorted(p for p in out.rglob("*") if p.is_file())
    assert {p.name for p in files} >= {
        "manifest.json",
        "results.jsonl",
        "feedback.jsonl",
        "quarantine.jsonl",
    }
    for path in files:
        blob = path.read_bytes()
        assert phi.leaks(blob) == [], path
        assert [o for o in world.originals if o in blob] == [], path
        for needle in (b"Elsewhere", b"Hospital Road", b"Smith", b"ACC123456", b"OTHER-999"):
            assert needle not in blob, (path, needle)
    exported = _exported(out)
    assert len(exported) == 4  # a, b, realistic, later; the other two are quarantined
    for ds in exported.values():
        assert phi.survivors(ds, times=which == "plain") == []
        assert phi.private_tags(ds) == []
        assert not [e.tag for e in ds if 0x5000 <= e.tag.group <= 0x60FF]  # curves, overlays
        assert ds.PatientIdentityRemoved == "YES"
        assert ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
        assert "SourceApplicationEntityTitle" not in ds.file_meta
        assert ds.preamble == b"\x00" * 128


def test_the_profile_and_options_used_are_recorded_in_each_instance(world: World) -> None:
    plain = _mapped(world, world.a)
    shifted = _exported(world.shifted)[plain.SOPInstanceUID]
    (code,) = plain.DeidentificationMethodCodeSequence
    assert (code.CodeValue, code.CodingSchemeDesignator) == ("113100", "DCM")
    assert code.CodeMeaning == "Basic Application Confidentiality Profile"
    assert plain.LongitudinalTemporalInformationModified == "REMOVED"
    shifted_codes = [i.CodeValue for i in shifted.DeidentificationMethodCodeSequence]
    assert shifted_codes == ["113100", "113107"]
    assert shifted.LongitudinalTemporalInformationModified == "MODIFIED"


def test_uids_are_replaced_consistently_so_references_still_resolve(world: World) -> None:
    a, b = _mapped(world, world.a), _mapped(world, world.b)
    assert a.SOPInstanceUID != world.a.SOPInstanceUID
    assert b.ReferencedImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert b.SourceImageSequence[0].ReferencedSOPInstanceUID == a.SOPInstanceUID
    assert b.ReferencedImageSequence[0].ReferencedSOPClassUID == phi.DX_CLASS  # a class: kept
    assert a.StudyInstanceUID == b.StudyInstanceUID != world.a.StudyInstanceUID
    assert a.FrameOfReferenceUID == b.FrameOfReferenceUID != world.a.FrameOfReferenceUID
    assert a.SeriesInstanceUID != b.SeriesInstanceUID  # planted apart, kept apart
    assert (world.plain / "studies" / a.StudyInstanceUID).is_dir()
    for uid in (a.SOPInstanceUID, a.StudyInstanceUID, a.FrameOfReferenceUID):
        assert uid.startswith("2.25.") and len(uid) <= 64
    # The same salt maps the same way in the other export; the patient keeps one pseudonym.
    shifted = _exported(world.shifted)
    assert a.SOPInstanceUID in shifted
    assert shifted[a.SOPInstanceUID].StudyInstanceUID == a.StudyInstanceUID
    assert a.PatientID == b.PatientID != world.a.PatientID


def test_results_and_feedback_carry_the_new_uids_and_no_identity(world: World) -> None:
    a, b = _mapped(world, world.a), _mapped(world, world.b)
    (line,) = (world.plain / "results.jsonl").read_text().splitlines()
    result = StudyResult.from_json(line)
    assert result.study_instance_uid == a.StudyInstanceUID
    assert result.findings[0].sop_instance_uid == a.SOPInstanceUID
    assert result.findings[0].bbox == (1, 2, 30, 40)
    assert [i.sop_instance_uid for i in result.instances] == [a.SOPInstanceUID, b.SOPInstanceUID]
    assert result.instances[1].reason == (f"instance not_analyzed: {export_module.WITHHELD}")
    assert result.created == ""  # when it was screened is about when the patient was imaged
    (feedback,) = _jsonl(world.plain / "feedback.jsonl")
    assert feedback["study_instance_uid"] == a.StudyInstanceUID
    assert feedback["sop_instance_uid"] == a.SOPInstanceUID
    assert feedback["code"] == "nodule" and feedback["verdict"] == "disagree"
    assert feedback["box"] == [1, 2, 30, 40]
    assert feedback["comment_withheld"] is True
    assert isinstance(feedback["user"], str) and "PHI" not in feedback["user"]
    assert "created" not in feedback and "ward" not in feedback
    manifest = json.loads((world.plain / "manifest.json").read_text())
    assert manifest["feedback"] == {"table": True, "dropped_columns": ["created", "id", "ward"]}


def test_quarantine_holds_back_secondary_capture_and_burned_in_images(world: World) -> None:
    keys = Keys.from_file(world.salt)
    rows = {r["sop_instance_uid"]: r for r in _jsonl(world.plain / "quarantine.jsonl")}
    sc = rows[keys.uid(world.secondary_capture.SOPInstanceUID)]
    assert "Secondary Capture" in str(sc["reason"])
    yes = rows[keys.uid(world.burned_in.SOPInstanceUID)]
    assert "Burned In Annotation is YES" in str(yes["reason"])
    assert len(rows) == 2
    exported = _exported(world.plain)
    assert not set(rows) & set(exported)
    manifest = json.loads((world.plain / "manifest.json").read_text())
    assert manifest["counts"] == {
        "studies": 3,
        "instances": 4,
        "quarantined": 2,
        "results": 1,
        "results_unreadable": 0,
        "feedback": 1,
    }
    assert manifest["profile"]["table_rows"] == 460
    assert manifest["options"] == {"shift_dates": False, "salt": "file", "studies": "all"}


def _days(value: str, reference: str) -> int:
    parse = lambda v: date(int(v[:4]), int(v[4:6]), int(v[6:8]))  # noqa: E731
    return (parse(value) - parse(reference)).days


def test_shift_dates_moves_every_date_of_a_patient_by_the_same_days(world: World) -> None:
    keys = Keys.from_file(world.salt)
    shifted = _exported(world.shifted)
    first = shifted[keys.uid(world.realistic.SOPInstanceUID)]
    later = shifted[keys.uid(world.later.SOPInstanceUID)]
    offset = _days(first.StudyDate, world.realistic.StudyDate)
    assert offset <= -365  # moved, and by at least a year
    assert _days(later.StudyDate, first.StudyDate) == INTERVAL_DAYS  # the interval is kept
    for ds, source in ((first, world.realistic), (later, world.later)):
        for keyword in ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate"):
            assert _days(ds[keyword].value, source[keyword].value) == offset, keyword
        # Not in the table, found by its VR: shifted like the rest.
        assert _days(ds.InstanceCreationDate, source.InstanceCreationDate) == offset
        assert ds.StudyTime == source.StudyTime  # whole days: the time of day is unchanged
        assert ds.PatientBirthDate == ""  # the option does not cover birth dates
    other = shifted[keys.uid(world.a.SOPInstanceUID)]
    assert _days(other.StudyDate, phi.MARK_DATE) != offset  # another patient, another offset
    (line,) = (world.shifted / "results.jsonl").read_text().splitlines()
    # The result and the feedback of that study move with its patient's dates.
    other_offset = _days(other.StudyDate, phi.MARK_DATE)
    created = StudyResult.from_json(line).created
    assert created == f"{date(2024, 3, 1) + timedelta(other_offset)}T10:00:00+00:00"
    (feedback,) = _jsonl(world.shifted / "feedback.jsonl")
    assert feedback["created"] == f"{date(2024, 3, 1) + timedelta(other_offset)}T10:00:00+00:00"


def test_without_shift_dates_follow_the_basic_profile(world: World) -> None:
    ds = _mapped(world, world.realistic)
    assert ds.StudyDate == "" and ds.StudyTime == ""  # Z
    assert ds.ContentDate == "19000101"  # Z/D, and Type 1 in enhanced images: a dummy
    assert ds.PatientBirthDate == "" and "PatientAge" not in ds
    assert "InstitutionAddress" not in ds and ds.InstitutionName == ""  # X, X/Z/D
    assert "OtherPatientIDsSequence" not in ds and "RequestAttributesSequence" not in ds
    assert ds.PatientID.startswith("ANON") and ds.PatientName == "ANON^" + ds.PatientID[4:]


def _dciodvfy_errors(path: Path) -> set[str]:
    run = subprocess.run([str(DCIODVFY), str(path)], capture_output=True, text=True, check=False)
    return {line for line in (run.stdout + run.stderr).splitlines() if line.startswith("Error")}


@pytest.mark.skipif(not DCIODVFY.exists(), reason="dciodvfy is not installed")
@pytest.mark.parametrize("which", ["plain", "shifted"])
def test_dciodvfy_reports_no_new_errors(world: World, which: str, tmp_path: Path) -> None:
    out = world.plain if which == "plain" else world.shifted
    keys = Keys.from_file(world.salt)
    for source in (world.realistic, world.a):
        before = tmp_path / "source.dcm"
        source.save_as(before, enforce_file_format=True)
        uid = keys.uid(source.SOPInstanceUID)
        (after,) = [p for p in (out / "studies").rglob("*.dcm") if _read(p).SOPInstanceUID == uid]
        assert _dciodvfy_errors(after) - _dciodvfy_errors(before) == set()
        if source is world.realistic:  # a valid source must give a valid export
            assert _dciodvfy_errors(before) == set() == _dciodvfy_errors(after)


def test_an_existing_export_is_never_overwritten(world: World) -> None:
    before = (world.plain / "manifest.json").read_bytes()
    with pytest.raises(ConfigurationError, match="already exists"):
        export_research(ExportOptions(world.store, world.plain, salt_file=world.salt))
    assert (world.plain / "manifest.json").read_bytes() == before


def test_a_failed_export_leaves_nothing_behind(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(path: Path, lines: list[str]) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(export_module, "_write_lines", fail)
    with pytest.raises(OSError, match="disk full"):
        export_research(ExportOptions(world.store, tmp_path / "out"))
    assert list(tmp_path.iterdir()) == []  # neither OUT nor the hidden staging folder


def test_a_folder_without_a_store_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="no intake database"):
        export_research(ExportOptions(tmp_path / "nowhere", tmp_path / "out"))
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "out").exists()


def test_studies_selects_and_unknown_studies_are_refused(world: World, tmp_path: Path) -> None:
    chosen = world.realistic.StudyInstanceUID
    summary = export_research(ExportOptions(world.store, tmp_path / "one", studies=(chosen,)))
    assert (summary.studies, summary.instances, summary.results) == (1, 1, 0)
    with pytest.raises(ConfigurationError, match="not in the store"):
        export_research(ExportOptions(world.store, tmp_path / "two", studies=("1.2.3.999",)))
    assert not (tmp_path / "two").exists()


def test_a_store_without_feedback_exports_none(world: World, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "store")
    store.receive((world.store / "instances").glob("*.dcm").__next__().read_bytes(), "test")
    store.close()
    with sqlite3.connect(tmp_path / "store" / "intake.sqlite3") as db:
        db.execute("DROP TABLE feedback")  # as in stores written before the review UI
    export_research(ExportOptions(tmp_path / "store", tmp_path / "out"))
    assert (tmp_path / "out" / "feedback.jsonl").read_text() == ""
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["feedback"]["table"] is False
    assert manifest["options"]["salt"] == "ephemeral"


def test_a_bare_dataset_in_the_store_is_exported_as_a_part10_file(
    world: World, tmp_path: Path
) -> None:
    # Intake accepts datasets without File Meta (read leniently); the export writes proper
    # files, in the syntax the dataset was encoded in.
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, True
    source = copy.deepcopy(world.realistic)
    if source.file_meta.TransferSyntaxUID.is_compressed:
        source.decompress()  # a bare dataset has no syntax to say its pixels are encapsulated
    write_dataset(buffer, source)
    store = SqliteStore(tmp_path / "store")
    store.receive(buffer.getvalue(), "test")
    store.close()
    summary = export_research(ExportOptions(tmp_path / "store", tmp_path / "out"))
    assert (summary.instances, summary.quarantined) == (1, 0)
    (path,) = (tmp_path / "out" / "studies").rglob("*.dcm")
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID == ImplicitVRLittleEndian
    assert ds.pixel_array.shape == (256, 256)
