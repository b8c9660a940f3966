"""The header gate: each refusal names the attribute and what the model reads instead."""

from __future__ import annotations

import dataclasses
import re

import pytest

from diagnostics.dicom import read_info
from diagnostics.dicom.image import InstanceInfo
from diagnostics.package import ModelPackage
from diagnostics.screening.gate import describe_scope, out_of_scope_reason
from tests.screening.conftest import study_files


@pytest.fixture(scope="module")
def chest(synth) -> InstanceInfo:  # type: ignore[no-untyped-def]
    return read_info(study_files(synth)[0])


def test_chest_radiograph_is_in_scope(chest: InstanceInfo, bundled: ModelPackage) -> None:
    assert out_of_scope_reason(chest, bundled.manifest.scope) is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            {"modality": "CT"},
            "CT is outside this model's scope: it reads DX or CR images of the CHEST",
        ),
        ({"body_part": "KNEE"}, "Body Part Examined KNEE is outside"),
        ({"body_part": None}, "Body Part Examined is missing"),
        ({"view_position": "LL"}, "View Position LL is outside"),
        ({"view_position": None}, "View Position is missing"),
        ({"photometric_interpretation": "RGB"}, "Photometric Interpretation RGB"),
        ({"frames": 3}, "multi-frame image \\(3 frames\\)"),
        ({"rows": 200}, "smaller than the 256 x 256"),
    ],
)
def test_out_of_scope_reasons(
    chest: InstanceInfo, bundled: ModelPackage, change: dict[str, object], expected: str
) -> None:
    info = dataclasses.replace(chest, **change)  # type: ignore[arg-type]
    reason = out_of_scope_reason(info, bundled.manifest.scope)
    assert reason is not None
    assert re.search(expected, reason), reason


def test_lower_case_header_values_are_accepted(chest: InstanceInfo, bundled: ModelPackage) -> None:
    info = dataclasses.replace(chest, body_part="chest", view_position="pa")
    assert out_of_scope_reason(info, bundled.manifest.scope) is None


def test_scope_description(bundled: ModelPackage) -> None:
    assert describe_scope(bundled.manifest.scope) == "DX or CR images of the CHEST in PA or AP view"
