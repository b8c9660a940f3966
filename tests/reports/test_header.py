"""The cleaned header copy the outputs are built from: valid values kept, the rest left out."""

from __future__ import annotations

import pytest
from pydicom import config
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import dcmread
from pydicom.sequence import Sequence

from diagnostics.reports._header import clean_header, patient_orientation, valid_value


@pytest.mark.parametrize(
    ("vr", "value", "valid"),
    [
        ("DA", "19010101", True),
        ("DA", "1901-01-01", False),
        ("DA", "20230229", False),  # not a leap year
        ("DA", "", True),
        ("TM", "235960", True),
        ("TM", "2359", True),
        ("TM", "256199", False),
        ("TM", "120000.123456", True),
        ("DT", "20240215171400+0100", True),
        ("DT", "20241315", False),
        ("SH", "A" * 16, True),
        ("SH", "A" * 17, False),
        ("CS", "chest", False),
        ("PN", "N" * 70 + "^Given", False),
        ("PN", "Иванов^Пётр", True),
        ("AS", "45", False),
        ("DS", "1.5", True),
    ],
)
def test_values_are_checked_against_their_vr(vr: str, value: str, valid: bool) -> None:
    assert valid_value(vr, value) is valid


def _read_back(ds: Dataset) -> Dataset:
    """`ds` written and read again, so that its text is decoded the way the reader sees it."""
    buffer = DicomBytesIO()
    with config.disable_value_validation():
        ds.save_as(buffer, implicit_vr=False, little_endian=True)
    buffer.seek(0)
    return dcmread(buffer, force=True)


def test_invalid_values_are_left_out_and_type2_written_empty() -> None:
    ds = Dataset()
    with config.disable_value_validation():
        ds.PatientBirthDate = "1901-01-01"
        ds.PatientSex = "U"
        ds.StudyDescription = "D" * 90
    ds.PatientName = "Doe^Jane"
    clean = clean_header(_read_back(ds))
    assert clean.PatientBirthDate == "" and clean.PatientSex == ""
    assert "StudyDescription" not in clean
    assert clean.PatientName == "Doe^Jane"
    assert clean.AccessionNumber == ""  # absent type 2: present, empty
    assert clean.SpecificCharacterSet == "ISO_IR 192"


def test_a_sequence_with_an_invalid_item_is_dropped_whole() -> None:
    ds = Dataset()
    code = Dataset()
    with config.disable_value_validation():
        code.CodeValue = "X" * 70
    ds.ProcedureCodeSequence = Sequence([code])
    assert "ProcedureCodeSequence" not in clean_header(_read_back(ds))


@pytest.mark.parametrize(
    ("charset", "name"),
    [
        ("ISO_IR 144", "Иванов^Пётр"),
        (["ISO 2022 IR 6", "ISO 2022 IR 144"], "Иванов^Пётр"),
        ("ISO_IR 100", "Müller^Jürgen"),
    ],
)
def test_text_is_decoded_with_the_source_charset_before_utf8(
    charset: str | list[str], name: str
) -> None:
    ds = Dataset()
    ds.SpecificCharacterSet = charset
    ds.PatientName = name
    clean = clean_header(_read_back(ds))
    assert str(clean.PatientName) == name
    assert str(_read_back(clean).PatientName) == name


@pytest.mark.parametrize(
    ("value", "expected"),
    [(["L", "F"], ["L", "F"]), (["A", "FR"], ["A", "FR"]), ("L", None), ("", None), (None, None)],
)
def test_patient_orientation_only_when_two_direction_codes(
    value: object, expected: list[str] | None
) -> None:
    ds = Dataset()
    if value is not None:
        with config.disable_value_validation():
            ds.PatientOrientation = value
    assert patient_orientation(ds) == expected
