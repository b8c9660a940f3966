"""Free text in exported results: UIDs and stored-file paths never survive."""

from __future__ import annotations

from diagnostics.deid.keys import Keys
from diagnostics.deid.research_export import scrub_text

UID = "1.2.826.0.1.3680043.8.498.123456789012345"


def test_uid_at_the_end_of_a_sentence_is_replaced() -> None:
    keys = Keys(b"s" * 32, source="test")
    text = scrub_text(f"the series {UID}. was refused", keys, set())
    assert text is not None and UID not in text and keys.uid(UID) in text


def test_stored_file_paths_are_replaced() -> None:
    keys = Keys(b"s" * 32, source="test")
    reason = "1 of 1 images failed: /srv/st-mary/storage/instances/ab12.dcm: damaged DICOM data"
    text = scrub_text(reason, keys, set())
    assert text is not None and "st-mary" not in text and "<stored file>" in text
    assert "damaged DICOM data" in text
