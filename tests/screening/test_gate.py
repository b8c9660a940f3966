"""The header gate: each refusal names the attribute and what the model reads instead."""

from __future__ import annotations

import dataclasses
import re

import pytest
from pydicom.dataset import Dataset

from diagnostics.dicom import read_info
from diagnostics.dicom.image import InstanceInfo
from diagnostics.package import ModelPackage
from diagnostics.screening.gate import describe_scope, out_of_scope_reason


@pytest.fixture(scope="module")
def chest(synth_studies) -> InstanceInfo:  # type: ignore[no-untyped-def]
    return read_info(synth_studies.files[0])


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
        ({"body_part": None, "dataset": Dataset()}, "Body Part Examined is missing"),
        ({"view_position": "LL"}, "View Position LL is outside"),
        ({"view_position": None, "dataset": Dataset()}, "View Position is missing"),
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


def _header(**attributes: object) -> Dataset:
    ds = Dataset()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


@pytest.mark.parametrize(
    "body_part",
    [
        "THORAX",
        "chest_pa",
        "Chest-AP",
        "  chest  ",
        "ГРУДНАЯ КЛЕТКА",
        "грудная_клетка",
        "ОГК",
        "KO\u02bbKRAK QAFASI",
        "KO'KRAK QAFASI",
        "ko\u2018krak",
        "КЎКРАК",
    ],
)
def test_site_wording_of_the_chest_is_in_scope(
    chest: InstanceInfo, bundled: ModelPackage, body_part: str
) -> None:
    info = dataclasses.replace(chest, body_part=body_part)
    assert out_of_scope_reason(info, bundled.manifest.scope) is None


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (_header(StudyDescription="XR CHEST PA"), None),
        (_header(SeriesDescription="Рентгенография органов грудной клетки"), None),
        (_header(ProtocolName="ОГК прямая"), None),
        (_header(StudyDescription="XR ABDOMEN"), "Body Part Examined is missing"),
        (_header(StudyDescription="CHESTNUT"), "Body Part Examined is missing"),
    ],
)
def test_missing_body_part_is_read_from_other_attributes(
    chest: InstanceInfo, bundled: ModelPackage, header: Dataset, expected: str | None
) -> None:
    info = dataclasses.replace(chest, body_part=None, dataset=header)
    reason = out_of_scope_reason(info, bundled.manifest.scope)
    assert reason == expected if expected is None else expected in str(reason)


def test_missing_body_part_with_anatomic_region_code_is_in_scope(
    chest: InstanceInfo, bundled: ModelPackage
) -> None:
    assert chest.dataset.AnatomicRegionSequence[0].CodeValue == "43799004"
    info = dataclasses.replace(chest, body_part=None)
    assert out_of_scope_reason(info, bundled.manifest.scope) is None


@pytest.mark.parametrize(
    ("header", "in_scope"),
    [
        (_header(SeriesDescription="CHEST PA"), True),
        (_header(SeriesDescription="CHEST PA AND LAT"), False),
        (_header(SeriesDescription="CHEST LATERAL"), False),
        (_header(SeriesDescription="CHEST"), False),
    ],
)
def test_missing_view_position_is_read_from_descriptions(
    chest: InstanceInfo, bundled: ModelPackage, header: Dataset, in_scope: bool
) -> None:
    info = dataclasses.replace(chest, view_position=None, dataset=header)
    reason = out_of_scope_reason(info, bundled.manifest.scope)
    assert (reason is None) == in_scope, reason
    if not in_scope:
        assert "set View Position at the modality" in str(reason)


def test_cyrillic_body_part_in_its_character_set(
    chest: InstanceInfo, bundled: ModelPackage
) -> None:
    """pydicom hands code strings back as ISO 8859-1; the gate reads them in the header's set."""
    for charset, codec in (("ISO_IR 144", "iso8859_5"), ("ISO_IR 192", "utf-8")):
        as_read = "ГРУДЬ".encode(codec).decode("latin-1")
        info = dataclasses.replace(
            chest, body_part=as_read, dataset=_header(SpecificCharacterSet=charset)
        )
        assert out_of_scope_reason(info, bundled.manifest.scope) is None
        knee = "КОЛЕНО".encode(codec).decode("latin-1")
        info = dataclasses.replace(info, body_part=knee)
        assert "Body Part Examined КОЛЕНО is outside" in str(
            out_of_scope_reason(info, bundled.manifest.scope)
        )
