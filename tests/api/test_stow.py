"""STOW-RS responses: statuses per PS3.18 and a DICOM JSON body that pydicom reads back."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest

from diagnostics.api.stow import (
    FAILURE_CANNOT_UNDERSTAND,
    FAILURE_OUT_OF_RESOURCES,
    FAILURE_SOP_CLASS_NOT_SUPPORTED,
    StowItem,
    build_stow_response,
    failed_item,
    failure_reason,
    peek_uids,
    stored_item,
)
from diagnostics.errors import CorruptDicomError, NotAnImageError, NotDicomError, StoreError

DX = "1.2.840.10008.5.1.4.1.1.1.1"


def test_all_stored_is_200_with_referenced_sop_sequence() -> None:
    response = build_stow_response([stored_item(DX, "1.2.3.1"), stored_item(DX, "1.2.3.2")])
    assert response.status == 200
    assert response.media_type == "application/dicom+json"
    ds = pydicom.Dataset.from_json(response.body)
    assert [i.ReferencedSOPInstanceUID for i in ds.ReferencedSOPSequence] == ["1.2.3.1", "1.2.3.2"]
    assert all(i.ReferencedSOPClassUID == DX for i in ds.ReferencedSOPSequence)
    assert "FailedSOPSequence" not in ds


def test_some_failed_is_202_none_stored_is_409() -> None:
    failed = StowItem(DX, "1.2.3.9", FAILURE_CANNOT_UNDERSTAND, "part 2: damaged")
    assert build_stow_response([stored_item(DX, "1.2.3.1"), failed]).status == 202
    response = build_stow_response([failed])
    assert response.status == 409
    ds = pydicom.Dataset.from_json(response.body)
    assert len(ds.ReferencedSOPSequence) == 0
    (item,) = ds.FailedSOPSequence
    assert (item.ReferencedSOPInstanceUID, item.FailureReason) == ("1.2.3.9", 0xC000)
    assert item.ErrorComment == "part 2: damaged"


def test_retrieve_url_only_when_given_and_something_was_stored() -> None:
    body = build_stow_response([stored_item(DX, "1.2")], retrieve_url="https://x/studies/1").body
    assert body["00081190"] == {"vr": "UR", "Value": ["https://x/studies/1"]}
    assert "00081190" not in build_stow_response([stored_item(DX, "1.2")]).body


def test_error_comment_is_a_valid_lo(recwarn: pytest.WarningsRecorder) -> None:
    long = "x\\y " * 40
    item = failed_item(b"junk", CorruptDicomError(long), "part 1")
    body = build_stow_response([item]).body
    comment = body["00081198"]["Value"][0]["00000902"]["Value"][0]  # type: ignore[index]
    assert len(comment) <= 64 and "\\" not in comment and comment.endswith("...")
    pydicom.Dataset.from_json(body)
    assert not [w for w in recwarn if "exceeds the maximum length" in str(w.message)]


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (StoreError("disk full"), FAILURE_OUT_OF_RESOURCES),
        (NotAnImageError("an SR"), FAILURE_SOP_CLASS_NOT_SUPPORTED),
        (NotDicomError("no"), FAILURE_CANNOT_UNDERSTAND),
    ],
)
def test_failure_reasons(error: Exception, code: int) -> None:
    assert failure_reason(error) == code  # type: ignore[arg-type]


def test_peek_uids_reads_what_it_can(tmp_path: Path) -> None:
    assert peek_uids(b"junk") == (None, None)
    assert peek_uids(b"") == (None, None)
    ds = pydicom.Dataset()
    ds.SOPClassUID = DX
    ds.SOPInstanceUID = "1.2.3.4"
    path = tmp_path / "x.dcm"
    ds.save_as(path, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert peek_uids(path.read_bytes()) == (DX, "1.2.3.4")
    item = failed_item(path.read_bytes(), NotAnImageError("an SR"), "part 3")
    assert (item.sop_class_uid, item.sop_instance_uid, item.comment) == (
        DX,
        "1.2.3.4",
        "part 3: an SR",
    )
