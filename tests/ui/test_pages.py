"""The review UI's data and pictures without a browser: filters, windowing, heatmap layer."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import cast

import numpy as np
import pytest
from PIL import Image

from diagnostics.dicom.image import DicomImage, Window
from diagnostics.errors import RequestError
from diagnostics.package import Manifest
from diagnostics.results import FindingResult, ModelRef
from diagnostics.ui.app import _safe_next
from diagnostics.ui.pages import parse_filters, waited
from diagnostics.ui.render import DisplayWindow, heatmap_png, image_png, windowed
from diagnostics.ui.triage import FlagRule, digits_apart, flag_rules

CODES = ("nodule", "consolidation")


def test_filters_are_parsed_and_bad_ones_named() -> None:
    where, page = parse_filters(
        {
            "status": "failed",
            "finding": "nodule",
            "from": "2024-03-01",
            "to": "2024-03-02",
            "read": "unread",
            "page": "3",
        },
        CODES,
    )
    assert (where.status, where.finding, where.read, page) == ("failed", "nodule", False, 3)
    start = datetime(2024, 3, 1, tzinfo=UTC).timestamp()
    assert where.received_from == start
    assert where.received_before == start + 2 * 86400  # "to" includes its whole day
    for query, message in (
        ({"status": "maybe"}, "status must be one of"),
        ({"finding": "fracture"}, "finding must be one of"),
        ({"from": "03/01/2024"}, "YYYY-MM-DD"),
        ({"page": "0"}, "between 1 and"),
        ({"page": "9" * 5000}, "between 1 and"),
        ({"read": "sometimes"}, "read, unread or all"),
        ({"to": "9999-12-31"}, "between 1900 and 9000"),
    ):
        with pytest.raises(RequestError, match=message):
            parse_filters(query, CODES)


def test_worklist_shows_unread_studies_unless_asked() -> None:
    assert parse_filters({}, CODES)[0].read is False
    assert parse_filters({"read": "all"}, CODES)[0].read is None
    assert parse_filters({"read": "read"}, CODES)[0].read is True


@pytest.mark.parametrize(
    ("probability", "threshold", "digits"),
    [
        (0.995, 0.990, 3),  # "0.995 vs 0.990", never "0.99 vs 0.99"
        (0.9996, 0.99, 4),  # short of 1: never "1.00"
        (0.25, 0.30, 2),
        (0.30, 0.30, 2),  # equal: the fewest digits
        (0.2041, 0.2049, 3),
        (0.99951, 0.9995, 5),
        (1.0, 0.5, 2),
        (0.0004, 0.5, 4),  # above 0: never "0.00"
        (0.1234567, 0.1234568, 6),  # at most six
    ],
)
def test_probabilities_get_the_digits_that_tell_them_apart(
    probability: float, threshold: float, digits: int
) -> None:
    assert digits_apart(probability, threshold) == digits


def _finding(code: str, probability: float, flagged: bool) -> FindingResult:
    return FindingResult(
        code=code,
        display=code,
        probability=probability,
        threshold=0.5,
        flagged=flagged,
        sop_instance_uid="1.2.3.4",
        bbox=(1, 1, 4, 4) if flagged else None,
    )


def test_each_finding_says_what_its_flag_does_to_the_priority() -> None:
    """The rule comes from the package that produced the result (its on_flag and
    urgent_threshold; none of them in older packages: every flag raises); another model's
    result gets no rule stated, rather than a guessed one."""
    sha = "a" * 64
    specs = [
        SimpleNamespace(code="consolidation", on_flag="urgent", urgent_threshold=None),
        SimpleNamespace(code="nodule", on_flag="routine", urgent_threshold=None),
        SimpleNamespace(code="effusion", on_flag="urgent", urgent_threshold=0.8),
        SimpleNamespace(code="old"),  # a package from before on_flag
    ]
    manifest = cast(Manifest, SimpleNamespace(sha256=sha, findings=specs))
    rules = flag_rules(manifest, ModelRef(name="m", version="1.0.0", sha256=sha))
    assert rules == {
        "consolidation": FlagRule("urgent"),
        "nodule": FlagRule("routine"),
        "effusion": FlagRule("urgent", 0.8),
        "old": FlagRule("urgent"),
    }
    assert rules["consolidation"].raises(_finding("consolidation", 0.6, True))
    assert not rules["consolidation"].raises(_finding("consolidation", 0.4, False))
    assert not rules["nodule"].raises(_finding("nodule", 0.99, True))
    assert not rules["effusion"].raises(_finding("effusion", 0.7, True))
    assert rules["effusion"].raises(_finding("effusion", 0.8, True))
    other = ModelRef(name="m", version="0.9.0", sha256="b" * 64)
    assert flag_rules(manifest, other) == {}
    assert flag_rules(None, other) == {}


def test_waiting_times_read_naturally() -> None:
    assert waited(59) == "0 min"
    assert waited(3 * 3600 + 5 * 60) == "3 h 05 min"
    assert waited(3 * 86400 + 2 * 3600) == "3 d 2 h"


def test_sign_in_only_returns_inside_the_ui() -> None:
    assert _safe_next("/ui/studies/1.2?image=0") == "/ui/studies/1.2?image=0"
    for target in (None, "https://evil.example/ui", "//evil.example", "/ui//evil", "/v1/x"):
        assert _safe_next(target) == "/ui/"


def _image() -> DicomImage:
    from diagnostics.dicom.image import InstanceInfo, InstanceUids

    pixels = np.tile(np.linspace(0, 4000, 64, dtype=np.float32), (48, 1))[None]
    info = InstanceInfo(
        uids=InstanceUids("p", "1.2", "1.2.3", "1.2.3.4", "1.2.840.10008.5.1.4.1.1.1.1"),
        sop_class_name="DX",
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        transfer_syntax_name="Explicit VR Little Endian",
        modality="DX",
        body_part="CHEST",
        view_position="PA",
        rows=48,
        columns=64,
        frames=1,
        samples_per_pixel=1,
        photometric_interpretation="MONOCHROME2",
        bits_allocated=16,
        bits_stored=12,
        pixel_signed=False,
        pixel_spacing_mm=(0.5, 0.5),
        spacing_source="PixelSpacing",
    )
    return DicomImage(
        info=info,
        pixels=pixels,
        value_range=(0.0, 4095.0),
        inverted=False,
        color_converted=False,
        windows=(Window(2000.0, 4000.0),),
        voi_lut_function=None,
    )


def test_window_and_level_change_the_picture() -> None:
    image = _image()
    assert DisplayWindow.default(image) == DisplayWindow(2000.0, 4000.0)
    wide = windowed(image, 0, DisplayWindow(2000.0, 4000.0))
    narrow = windowed(image, 0, DisplayWindow(2000.0, 400.0))
    assert wide.dtype == np.uint8 and wide[0, 0] == 0 and wide[0, -1] == 255
    assert (narrow == 0).sum() > (wide == 0).sum()  # narrower window: more black and white
    png = Image.open(io.BytesIO(image_png(image, 0, None)))
    assert png.size == (64, 48) and png.mode == "L"
    with pytest.raises(RequestError, match="positive width"):
        DisplayWindow.parse("100", "-5")
    assert DisplayWindow.parse(None, "") is None


def test_heatmap_layer_is_clear_where_there_is_no_evidence() -> None:
    cam = np.full((4, 4), -3.0, dtype=np.float32)
    cam[0, 0] = 4.0  # strong evidence in the top left corner only
    layer = np.asarray(Image.open(io.BytesIO(heatmap_png([cam], 48, 64))))
    assert layer.shape == (48, 64, 4)
    assert layer[0, 0, 3] > 100 and layer[-1, -1, 3] == 0
