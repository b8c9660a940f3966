"""StudyResult enforces the fail-safe rule on construction."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from diagnostics.results import FindingResult, InstanceResult, ModelRef, StudyResult

MODEL = ModelRef(name="m", version="1.0.0", sha256="a" * 64)
ANALYSED = [InstanceResult(sop_instance_uid="1.2.3", status="analyzed")]


def _finding(probability: float = 0.2, threshold: float = 0.5, **kw: Any) -> FindingResult:
    return FindingResult(
        code="nodule",
        display="Lung nodule",
        probability=probability,
        threshold=threshold,
        flagged=probability >= threshold,
        sop_instance_uid="1.2.3",
        **kw,
    )


def _study(**kw: Any) -> StudyResult:
    fields: dict[str, Any] = {
        "study_instance_uid": "1.2",
        "status": "analyzed",
        "model": MODEL,
        "findings": [_finding()],
        "instances": ANALYSED,
    }
    fields.update(kw)
    return StudyResult(**fields)


def test_valid_result_round_trips() -> None:
    result = _study(findings=[_finding(0.9, bbox=(1, 2, 30, 40))], priority="urgent")
    assert StudyResult.from_json(result.to_json()) == result
    assert result.flagged[0].bbox == (1, 2, 30, 40)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"findings": []}, "no finding was reported"),
        (
            {
                "instances": [
                    InstanceResult(sop_instance_uid="1", status="not_analyzed", reason="CT")
                ]
            },
            "no instance was analysed",
        ),
        ({"model": None}, "names the model"),
        ({"reason": "x"}, "has no reason"),
        ({"status": "failed", "reason": "x"}, "cannot carry findings"),
        ({"status": "not_analyzed", "findings": []}, "requires a reason"),
        (
            {"status": "failed", "findings": [], "reason": "x", "priority": "urgent"},
            "only findings",
        ),
        ({"priority": "urgent"}, "priority 'urgent' but no finding is flagged"),
    ],
)
def test_fail_safe_violations_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        _study(**change)


def test_a_flag_may_leave_the_study_routine() -> None:
    """A routine finding's flag (the package's on_flag) keeps the study routine."""
    result = _study(findings=[_finding(0.9)], priority="routine")
    assert result.flagged and result.priority == "routine"


def test_flag_must_follow_the_threshold() -> None:
    with pytest.raises(ValidationError, match="contradicts"):
        FindingResult(
            code="n",
            display="N",
            probability=0.9,
            threshold=0.5,
            flagged=False,
            sop_instance_uid="1",
        )


def test_box_must_be_a_box() -> None:
    with pytest.raises(ValidationError, match="not a box"):
        _finding(0.9, bbox=(10, 10, 5, 20))


def test_instance_reason_required_exactly_when_skipped() -> None:
    with pytest.raises(ValidationError, match="reason is required"):
        InstanceResult(sop_instance_uid="1", status="failed")
    with pytest.raises(ValidationError, match="reason is required"):
        InstanceResult(sop_instance_uid="1", status="analyzed", reason="fine")
