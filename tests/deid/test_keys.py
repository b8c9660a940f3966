"""Keyed replacements: stable under one salt, unrelated under another, valid as DICOM."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydicom.uid import UID

from diagnostics.deid.keys import SHIFT_MAX_DAYS, SHIFT_MIN_DAYS, Keys
from diagnostics.errors import ConfigurationError

SOURCE = "1.2.826.0.1.3680043.8.498.11848687980030945802704791543996587999"


def test_the_same_salt_gives_the_same_replacements_and_another_salt_does_not() -> None:
    one, same, other = (
        Keys(b"a" * 32, source="test"),
        Keys(b"a" * 32, source="test"),
        Keys(b"b" * 32, source="test"),
    )
    assert one.uid(SOURCE) == same.uid(SOURCE) != other.uid(SOURCE)
    assert one.uid(SOURCE) == one.uid(SOURCE + "\x00")  # padding is not part of the UID
    assert one.pseudonym("id\x1f\x1fP1") == same.pseudonym("id\x1f\x1fP1")
    assert one.pseudonym("id\x1f\x1fP1") != other.pseudonym("id\x1f\x1fP1")
    assert one.uid("1.2.3") != one.uid("1.2.4")


def test_new_uids_are_valid_uuid_derived_uids() -> None:
    keys = Keys(b"k" * 32, source="test")
    for n in range(200):
        new = keys.uid(f"{SOURCE}.{n}")
        assert UID(new).is_valid, new
        assert new.startswith("2.25.") and len(new) <= 64
        number = int(new[5:])
        assert (number >> 76) & 0xF == 8  # UUID version 8
        assert (number >> 62) & 0x3 == 0b10  # RFC 9562 variant


def test_day_offsets_are_one_to_ten_years_back() -> None:
    keys = Keys(b"k" * 32, source="test")
    offsets = {keys.day_offset(f"id\x1f\x1fP{n}") for n in range(300)}
    assert all(-SHIFT_MAX_DAYS <= d <= -SHIFT_MIN_DAYS for d in offsets)
    assert len(offsets) > 250  # spread, not a handful of values


def test_a_short_salt_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="at least 16"):
        Keys(b"short", source="test")


def test_a_missing_salt_file_is_created_private_and_then_reused(tmp_path: Path) -> None:
    path = tmp_path / "salt"
    first = Keys.from_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(path.read_text().strip()) == 64
    assert Keys.from_file(path).uid(SOURCE) == first.uid(SOURCE)
    assert Keys.ephemeral().uid(SOURCE) != first.uid(SOURCE)


def test_an_unusable_salt_file_is_a_configuration_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="--salt-file"):
        Keys.from_file(tmp_path / "missing-folder" / "salt")
