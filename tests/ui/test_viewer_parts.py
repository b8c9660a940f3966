"""The viewer's decisions without a browser: markers from Patient Orientation only, presets from
the image's own grey values, which image stands beside the first, and the image route's size
and region parameters."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from diagnostics.errors import RequestError
from diagnostics.ui.render import DisplayWindow, Region, image_png, render_side
from diagnostics.ui.viewer import orientation, presets, side_index
from tests.ui.test_pages import _image


def _header(**values: object) -> Dataset:
    ds = Dataset()
    for key, value in values.items():
        setattr(ds, key, value)
    return ds


def test_markers_come_from_patient_orientation_only() -> None:
    pa = orientation(_header(PatientOrientation=["L", "F"], ViewPosition="PA"))
    assert (pa.left, pa.right, pa.view, pa.known) == ("R", "L", "PA", True)
    flipped = orientation(_header(PatientOrientation=["R", "F"]))
    assert (flipped.left, flipped.right) == ("L", "R")
    oblique = orientation(_header(PatientOrientation=["LP", "F"]))
    assert (oblique.left, oblique.right) == ("RA", "LP")
    lateral = orientation(_header(PatientOrientation=["A", "F"], ViewPosition="LL"))
    assert (lateral.left, lateral.right, lateral.lateral) == ("P", "A", True)
    # Empty, malformed or one value: unknown, even when the view position would suggest a side.
    for value in ("", ["X", "F"], ["L"], "LF", None):
        shown = orientation(
            _header(PatientOrientation=value, ViewPosition="PA", ImageLaterality="U")
        )
        assert not shown.known and shown.left is None and shown.view == "PA", value
        assert shown.laterality is None  # "U" (unpaired) says nothing
    assert orientation(_header(ImageLaterality="L")).laterality == "L"


def test_presets_are_windows_over_the_images_own_values() -> None:
    image = _image()
    default = DisplayWindow(2000.0, 4000.0)
    shown = presets(image.pixels[0], default)
    assert shown["default"] == default and set(shown) == {"default", "lung", "mediastinum", "bone"}
    assert shown["lung"].center < shown["mediastinum"].center < shown["bone"].center
    assert all(w.width > 0 for w in shown.values())
    flat = presets(np.full((8, 8), 7.0, dtype=np.float32), default)
    assert flat["lung"].width == 1.0  # a flat image still gets a usable window


def test_the_second_pane_prefers_a_lateral_beside_a_frontal() -> None:
    assert side_index(0, 1, ["PA"]) is None
    assert side_index(0, 3, ["PA", "PA", "LL"]) == 2
    assert side_index(2, 3, ["PA", "AP", "LL"]) == 0  # a lateral chosen: a frontal beside it
    assert side_index(1, 2, [None, None]) == 0


def test_size_and_region_are_range_checked() -> None:
    assert render_side(None) is None and render_side("512") == 512
    for bad in ("0", "15", "8193", "-5", "1e3", "9" * 40):
        with pytest.raises(RequestError, match="size must be"):
            render_side(bad)
    assert Region.parse("1,2,30,40", 48, 64) == Region(1, 2, 30, 40)
    assert Region.parse("", 48, 64) is None
    for bad in ("1,2,3", "a,b,c,d", "-1,0,5,5", "5,0,5,5", "0,0,65,48", "0,0,64,49", "0,0,1e2,4"):
        with pytest.raises(RequestError):
            Region.parse(bad, 48, 64)


def test_a_region_is_rendered_at_the_size_asked_never_larger_than_its_pixels() -> None:
    image = _image()  # 64 x 48, a left-to-right ramp
    whole = Image.open(io.BytesIO(image_png(image, 0, None, size=32)))
    assert whole.size == (32, 24)
    right = np.asarray(
        Image.open(io.BytesIO(image_png(image, 0, None, 1000, Region(32, 0, 64, 48))))
    )
    assert right.shape == (48, 32)  # not scaled up
    left = np.asarray(Image.open(io.BytesIO(image_png(image, 0, None, 1000, Region(0, 0, 32, 48)))))
    assert right.mean() > left.mean() + 50  # the crop is the right half of the ramp
