"""STOW-RS responses (DICOM PS3.18 §10.5): which instances were stored, which failed and why.

The response is a DICOM JSON data set (PS3.18 Annex F) sent as `application/dicom+json`:

- Referenced SOP Sequence (0008,1199): one item per stored instance, with Referenced SOP Class
  UID (0008,1150) and Referenced SOP Instance UID (0008,1155);
- Failed SOP Sequence (0008,1198): one item per refused part, with the UIDs where they could be
  read, Failure Reason (0008,1197) and our human-readable reason in Error Comment (0000,0902)
  (an LO, so cut to 64 characters; the service log has the whole reason);
- Retrieve URL (0008,1190) when the caller names one.

HTTP status (PS3.18 Table 10.5.3-1): 200 when every instance was stored, 202 when some were
and others failed, 409 when none was stored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pydicom

from diagnostics.dicom.header import uid_problem
from diagnostics.dicom.reader import PARSER_FAILURES, peek_stream
from diagnostics.errors import (
    DiagnosticsError,
    DuplicateInstanceError,
    NotAnImageError,
    StoreError,
    TooLargeError,
)

STOW_MEDIA_TYPE = "application/dicom+json"

FAILURE_CANNOT_UNDERSTAND = 0xC000
"""Processing failure: the data set is not something we can use (named in Error Comment)."""
FAILURE_OUT_OF_RESOURCES = 0xA700
"""Storage failed on our side; the sender should retry later."""
FAILURE_SOP_CLASS_NOT_SUPPORTED = 0x0122
"""Referenced SOP Class not supported: a valid object that is not an image (SR, PDF, ...)."""

FAILURE_DUPLICATE_SOP_INSTANCE = 0x0111
"""Duplicate SOP Instance (PS3.7 Annex C): another copy of this SOP Instance UID, with other
content or in another study, is already stored; the stored copy is kept."""

MAX_COMMENT = 64
"""Error Comment is LO: at most 64 characters; longer reasons are cut with an ellipsis."""


@dataclass(frozen=True)
class StowItem:
    """The fate of one part of a STOW-RS request."""

    sop_class_uid: str | None
    sop_instance_uid: str | None
    failure_reason: int | None = None
    """None when stored; otherwise a Failure Reason code."""
    comment: str | None = None

    @property
    def stored(self) -> bool:
        return self.failure_reason is None


@dataclass(frozen=True)
class StowResponse:
    status: int
    body: dict[str, object]
    media_type: str = STOW_MEDIA_TYPE


def failure_reason(error: DiagnosticsError) -> int:
    """The Failure Reason code for an error (PS3.4 Annex B storage statuses)."""
    if isinstance(error, StoreError):
        return FAILURE_OUT_OF_RESOURCES
    if isinstance(error, NotAnImageError):
        return FAILURE_SOP_CLASS_NOT_SUPPORTED
    if isinstance(error, DuplicateInstanceError):
        return FAILURE_DUPLICATE_SOP_INSTANCE
    if isinstance(error, TooLargeError):
        return FAILURE_OUT_OF_RESOURCES
    return FAILURE_CANNOT_UNDERSTAND


def stored_item(sop_class_uid: str | None, sop_instance_uid: str) -> StowItem:
    return StowItem(sop_class_uid, sop_instance_uid)


def failed_item(data: bytes | None, error: DiagnosticsError, label: str | None = None) -> StowItem:
    """A failed part, with its UIDs when a lenient read of `data` finds them."""
    sop_class, sop_instance = peek_uids(data) if data else (None, None)
    comment = str(error)
    if label and not comment.startswith(label):
        comment = f"{label}: {comment}"
    return StowItem(sop_class, sop_instance, failure_reason(error), comment)


def build_stow_response(
    items: Sequence[StowItem], *, retrieve_url: str | None = None
) -> StowResponse:
    """The status and DICOM JSON body for the parts of one request, in request order."""
    stored = [i for i in items if i.stored]
    failed = [i for i in items if not i.stored]
    body: dict[str, object] = {}
    if retrieve_url is not None and stored:
        body["00081190"] = {"vr": "UR", "Value": [retrieve_url]}
    if failed:
        body["00081198"] = {"vr": "SQ", "Value": [_failed(i) for i in failed]}
    body["00081199"] = {"vr": "SQ", "Value": [_referenced(i) for i in stored]}
    if not failed:
        status = 200
    elif stored:
        status = 202
    else:
        status = 409
    return StowResponse(status, body)


def _uids(item: StowItem) -> dict[str, object]:
    out: dict[str, object] = {}
    if item.sop_class_uid:
        out["00081150"] = {"vr": "UI", "Value": [item.sop_class_uid]}
    if item.sop_instance_uid:
        out["00081155"] = {"vr": "UI", "Value": [item.sop_instance_uid]}
    return out


def _referenced(item: StowItem) -> dict[str, object]:
    return _uids(item)


def _failed(item: StowItem) -> dict[str, object]:
    out = _uids(item)
    out["00081197"] = {"vr": "US", "Value": [item.failure_reason]}
    if item.comment:
        out["00000902"] = {"vr": "LO", "Value": [_long_string(item.comment)]}
    return out


def _long_string(text: str) -> str:
    """A valid LO value: one line, no backslash, at most 64 characters."""
    clean = " ".join(text.replace("\\", "/").split())
    return clean if len(clean) <= MAX_COMMENT else clean[: MAX_COMMENT - 3].rstrip() + "..."


def peek_uids(data: bytes) -> tuple[str | None, str | None]:
    """SOP Class and Instance UIDs from bytes that may not be valid DICOM; None where unknown.

    A deflated part is inflated only as far as a peek needs (`peek_stream`): the part may be
    a deflate bomb refused for exactly that reason.
    """
    try:
        ds = pydicom.dcmread(
            peek_stream(data),
            force=True,
            stop_before_pixels=True,
            specific_tags=["SOPClassUID", "SOPInstanceUID"],
        )
        sop_class = ds.get("SOPClassUID")
        sop_instance = ds.get("SOPInstanceUID")
    except PARSER_FAILURES:
        return None, None
    return _uid_or_none(sop_class), _uid_or_none(sop_instance)


def _uid_or_none(value: object) -> str | None:
    text = str(value).strip() if value is not None else ""
    return text if text and not uid_problem(text) else None
