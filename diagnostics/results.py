"""StudyResult: what screening says about one study (the JSON contract in docs/architecture.md).

Valid once built: the models check the fail-safe rule on construction, so no code path can
produce an "analysed, nothing found" result for a study the model never read, or a "failed"
result that still carries findings.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from pydantic import Field, model_validator

from diagnostics.strict import StrictModel

Status = Literal["analyzed", "not_analyzed", "failed"]
InstanceStatus = Literal["analyzed", "not_analyzed", "failed"]
Priority = Literal["urgent", "routine"]


class ModelRef(StrictModel):
    """Which model package produced a result: enough to find the exact file again."""

    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")


class FindingResult(StrictModel):
    """One finding for the study: the strongest evidence over its analysed instances."""

    code: str = Field(min_length=1)
    display: str = Field(min_length=1)
    probability: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    threshold: float = Field(ge=0.0, le=1.0, allow_inf_nan=False)
    flagged: bool
    sop_instance_uid: str = Field(min_length=1)
    """The instance the probability and the box come from."""
    bbox: tuple[int, int, int, int] | None = None
    """(x0, y0, x1, y1) in that instance's pixel columns and rows, end exclusive; set for flagged
    findings only, from the class activation map, and only when it is localised (`localised`):
    a flagged finding without one is "not localised"."""

    @model_validator(mode="after")
    def _check(self) -> FindingResult:
        if self.flagged != (self.probability >= self.threshold):
            raise ValueError(
                f"finding {self.code!r}: flagged={self.flagged} contradicts probability "
                f"{self.probability} and threshold {self.threshold}"
            )
        if self.bbox is not None:
            x0, y0, x1, y1 = self.bbox
            if not (0 <= x0 < x1 and 0 <= y0 < y1):
                raise ValueError(f"finding {self.code!r}: bbox {self.bbox} is not a box")
        return self


class InstanceResult(StrictModel):
    """What happened to one instance of the study, so that nothing is silently skipped."""

    sop_instance_uid: str = Field(min_length=1)
    status: InstanceStatus
    reason: str | None = None
    appearance_score: float | None = Field(default=None, allow_inf_nan=False)
    """How unlike the training images this image looks (1.0 is the refusal threshold)."""

    @model_validator(mode="after")
    def _check(self) -> InstanceResult:
        if (self.status == "analyzed") == (self.reason is not None):
            raise ValueError(
                f"instance {self.sop_instance_uid}: a reason is required exactly when the "
                f"instance was not analysed (status {self.status!r})"
            )
        return self


MAX_BOX_SHARE = 0.4
"""A box is drawn only when it covers at most this share of its image. Class activation over a
larger area is not a localisation (a false-positive nodule at p = 0.33 boxed the whole chest):
such a flagged finding is "not localised" on the review page and has no box in the overlay, the
presentation state or the SR (no TID 1410 region). The bundled model's localised boxes are far
smaller (flagged nodules 1.6 % of the image at the median, consolidation a lobe at most)."""


def box_share(bbox: tuple[int, int, int, int], rows: int, columns: int) -> float:
    """The share of a `rows` x `columns` image that `bbox` (x0, y0, x1, y1) covers."""
    x0, y0, x1, y1 = bbox
    return max(0, x1 - x0) * max(0, y1 - y0) / float(max(1, rows * columns))


def localised(
    bbox: tuple[int, int, int, int] | None, rows: int, columns: int, limit: float = MAX_BOX_SHARE
) -> bool:
    """Whether a box says where a finding is: it exists and covers at most `limit` of the image
    (see `MAX_BOX_SHARE`)."""
    return bbox is not None and box_share(bbox, rows, columns) <= limit


OutputKind = Literal["sr", "overlay", "presentation_state"]


class OutputFailure(StrictModel):
    """A DICOM output that could not be built for an analysed study.

    The findings still stand (the model ran); the failure is named so that a person knows the
    PACS did not get that object, instead of the result silently lacking it.
    """

    output: OutputKind
    sop_instance_uid: str | None = None
    """The source image the output was for (overlays and presentation states); None for the SR."""
    reason: str = Field(min_length=1)


class StudyResult(StrictModel):
    """The screening outcome of one study."""

    study_instance_uid: str = Field(min_length=1)
    status: Status
    reason: str | None = None
    priority: Priority = "routine"
    model: ModelRef | None = None
    findings: list[FindingResult] = Field(default_factory=list)
    instances: list[InstanceResult] = Field(default_factory=list)
    output_failures: list[OutputFailure] = Field(default_factory=list)
    """DICOM outputs that could not be built (empty when all were, or none were due)."""
    created: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @model_validator(mode="after")
    def _check_fail_safe(self) -> StudyResult:
        where = f"study {self.study_instance_uid}"
        if self.status == "analyzed":
            if self.reason is not None:
                raise ValueError(f"{where}: an analysed study has no reason")
            if self.model is None:
                raise ValueError(f"{where}: an analysed study names the model that read it")
            if not any(i.status == "analyzed" for i in self.instances):
                raise ValueError(f"{where}: analysed, but no instance was analysed")
            if not self.findings:
                raise ValueError(f"{where}: analysed, but no finding was reported")
        else:
            if not self.reason:
                raise ValueError(f"{where}: status {self.status!r} requires a reason")
            if self.findings:
                raise ValueError(f"{where}: status {self.status!r} cannot carry findings")
            if self.priority == "urgent":
                raise ValueError(f"{where}: only findings make a study urgent")
            if self.output_failures:
                raise ValueError(f"{where}: only an analysed study has outputs that can fail")
        # A flag may leave the study routine (the package's on_flag), never the reverse.
        if self.priority == "urgent" and not any(f.flagged for f in self.findings):
            raise ValueError(f"{where}: priority 'urgent' but no finding is flagged")
        return self

    @property
    def flagged(self) -> list[FindingResult]:
        return [f for f in self.findings if f.flagged]

    @classmethod
    def from_json(cls, text: str | bytes) -> StudyResult:
        return cls.model_validate_json(text)

    def to_json(self) -> str:
        return self.model_dump_json()
