"""The engine on an in-memory dataset holding every attribute of the table, nested too.

In memory the command (0000) and file meta (0002) groups can be planted as well, which a
Part 10 file cannot carry; `test_export.py` covers the same ground through real files.
"""

from __future__ import annotations

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian

from diagnostics.deid.engine import Deidentifier, patient_key
from diagnostics.deid.keys import Keys
from tests.deid import phi

KEYS = Keys(b"engine-test-salt-0123456789", source="test")


def _source() -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = phi.DX_CLASS
    phi.plant(ds, variant=1, writable=False)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.file_meta.SourceApplicationEntityTitle = "PHI9901"
    ds.preamble = b"PHI9902".ljust(128, b"\x00")
    # The whole table again, one level down in a sequence the profile keeps and cleans,
    # and two levels down inside a kept reference sequence.
    nested = Dataset()
    phi.plant(nested, variant=2, writable=False)
    ds.ContributingEquipmentSequence = Sequence([nested])
    deeper = Dataset()
    phi.plant(deeper, variant=3, writable=False)
    ds.ReferencedImageSequence[0].ContributingEquipmentSequence = Sequence([deeper])
    return ds


def _bytes(ds: Dataset) -> bytes:
    buffer = DicomBytesIO()
    buffer.is_little_endian, buffer.is_implicit_VR = True, False
    write_dataset(buffer, ds)
    return buffer.getvalue()


def test_nothing_planted_survives_at_any_depth() -> None:
    source = _source()
    before = _bytes(source)
    assert len(phi.leaks(before)) > 1000  # the planting is there to be found
    out = Deidentifier(KEYS).deidentify(source)
    assert phi.leaks(_bytes(out) + _bytes(out.file_meta) + out.preamble) == []
    assert phi.survivors(out, times=True) == []
    assert phi.private_tags(out) == []
    assert _bytes(source) == before  # the source dataset is left as it was


def test_with_shifted_dates_nothing_planted_survives_but_times() -> None:
    out = Deidentifier(KEYS, shift_dates=True).deidentify(_source())
    assert phi.leaks(_bytes(out)) == []
    assert phi.survivors(out, times=False) == []
    days = KEYS.day_offset(patient_key(_source()))
    shifted = out.StudyDate
    assert shifted and shifted != phi.MARK_DATE
    assert out.ContributingEquipmentSequence[0].StudyDate == shifted  # nested: same patient
    assert out.AcquisitionDateTime == shifted + phi.MARK_TIME
    assert out.StudyTime == phi.MARK_TIME
    assert out.PatientBirthDate == ""
    assert days < 0


def test_uids_map_the_same_way_wherever_they_occur() -> None:
    source = _source()
    out = Deidentifier(KEYS).deidentify(source)
    original = source.ReferencedImageSequence[0].ReferencedSOPInstanceUID
    assert out.ReferencedImageSequence[0].ReferencedSOPInstanceUID == KEYS.uid(original)
    assert out.SOPInstanceUID == KEYS.uid(source.SOPInstanceUID)
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.ReferencedImageSequence[0].ReferencedSOPClassUID == phi.DX_CLASS
    assert out.SOPClassUID == phi.DX_CLASS


def test_identity_is_replaced_by_a_pseudonym_and_the_method_is_recorded() -> None:
    source = _source()
    out = Deidentifier(KEYS).deidentify(source)
    pseudonym = KEYS.pseudonym(patient_key(source))
    assert out.PatientID == pseudonym
    assert out.PatientName == "ANON^" + pseudonym[4:]
    nested = out.ContributingEquipmentSequence[0]
    assert nested.PatientName == "" and nested.PatientID.startswith("ANON")
    assert out.PatientIdentityRemoved == "YES"
    assert [i.CodeValue for i in out.DeidentificationMethodCodeSequence] == ["113100"]
    assert out.file_meta.ImplementationVersionName == "DIAGNOSTICS_DEID"


def test_patients_are_keyed_by_id_and_issuer_then_name_then_study() -> None:
    ds = Dataset()
    ds.StudyInstanceUID = "1.2.3"
    assert patient_key(ds) == "study\x1f1.2.3"
    ds.PatientName = "Doe^Jane"
    ds.PatientBirthDate = "19700101"
    assert patient_key(ds) == "name\x1fDoe^Jane\x1f19700101"
    ds.PatientID = "12345"
    ds.IssuerOfPatientID = "HOSP-A"
    assert patient_key(ds) == "id\x1fHOSP-A\x1f12345"
