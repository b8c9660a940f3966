"""The JSON bodies of the HTTP API as pydantic models, so the OpenAPI page describes the
bodies the endpoints actually build (`diagnostics.api.endpoints` constructs these)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from diagnostics.results import StudyResult

WorklistStatus = Literal["analyzed", "not_analyzed", "failed", "pending"]


class ErrorBody(BaseModel):
    """Every error: the exception class and a message that names the problem."""

    model_config = ConfigDict(extra="allow")

    error: str = Field(examples=["UnsupportedMediaTypeError"])
    message: str


class RefusedPart(BaseModel):
    """One part of a request that was refused, and why."""

    part: int = Field(description="1-based position of the part in the request")
    error: str
    message: str


class Refusal(ErrorBody):
    """A screening request refused whole: nothing was stored."""

    refused: list[RefusedPart]


class PendingScreen(BaseModel):
    """Stored, but screening of some studies has not finished within the request."""

    message: str
    pending: list[str] = Field(description="StudyInstanceUIDs to poll at GET /v1/studies/{uid}")
    results: list[StudyResult] = Field(description="the studies that did finish")


class StudyState(BaseModel):
    """A study's newest result, or where its screening stands."""

    study_instance_uid: str
    state: str = Field(description="done, or the screening state while it is due")
    version: int = Field(description="result version; 0 before the first result")
    result: StudyResult | None
    images_purged: bool = Field(
        default=False,
        description="the stored images and output files went with the retention window "
        "(--retain-days); the result stands, and the study is screened again if sent again",
    )
    images_note: str | None = Field(
        default=None,
        description="after a purge: which images the current version covers (a study sent "
        "again after a purge is screened on the instances received since, only)",
    )
    earlier_urgent_version: int | None = Field(
        default=None,
        description="an earlier version of the result flagged the study urgent and this one "
        "does not: read that version before dismissing the study",
    )


class WorklistItem(BaseModel):
    """One study on the worklist: UIDs and our own fields, never patient data."""

    study_instance_uid: str
    state: str
    status: str = Field(description="analyzed, not_analyzed, failed, or pending before a result")
    priority: str | None = Field(description="the model's, from the newest result; null before")
    requested_priority: str | None = Field(description="asked for by the PACS or a person")
    effective_priority: str = Field(
        description="what orders the list: the higher of the two, or escalated after a wait"
    )
    read: bool
    flagged: list[str] = Field(description="finding codes flagged in the newest result")
    waiting_since: str = Field(description="first instance received (ISO 8601, UTC)")
    last_received: str
    version: int


class WorklistPage(BaseModel):
    """One page of the worklist in priority order; `total` counts every match."""

    total: int
    limit: int
    offset: int
    items: list[WorklistItem]
