"""What every channel checks about a case's result: the same expectations, one place."""

from __future__ import annotations

from typing import Any

from tests.realworld.corpus import Built, instance_expectations


def problems(built: Built, result: dict[str, Any]) -> list[str]:
    """Why `result` (a StudyResult as JSON) is not what the case expects; empty when it is."""
    case = built.case
    found: list[str] = []
    if result.get("status") != case.expect:
        found.append(f"status {result.get('status')!r}, expected {case.expect!r}: {result}")
        return found
    reason = str(result.get("reason") or "")
    if case.expect == "not_analyzed" and case.reason not in reason:
        found.append(f"reason {reason!r} does not say {case.reason!r}")
    if case.expect == "analyzed":
        if result.get("output_failures"):
            found.append(f"outputs failed: {result['output_failures']}")
        if not result.get("findings"):
            found.append("an analysed study without findings")
    instances = {i["sop_instance_uid"]: i for i in result.get("instances", [])}
    for sop, (status, words) in instance_expectations(built).items():
        got = instances.get(sop)
        if got is None:
            found.append(f"instance {sop} missing from the result")
        elif got["status"] != status or words not in str(got.get("reason") or ""):
            found.append(f"instance {sop}: {got}, expected {status} saying {words!r}")
    return found
