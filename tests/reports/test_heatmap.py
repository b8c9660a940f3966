"""CAM upsampling: sizes, the sigmoid, and a blob landing where it should on the image."""

from __future__ import annotations

import numpy as np
import pytest

from diagnostics.errors import ReportError
from diagnostics.reports.heatmap import heatmap, upsample


def test_heatmap_is_image_sized_and_a_probability() -> None:
    cam = np.random.default_rng(0).normal(0.0, 5.0, (20, 20)).astype(np.float32)
    heat = heatmap(cam, 256, 300)
    assert heat.shape == (256, 300)
    assert heat.dtype == np.float32
    assert float(heat.min()) >= 0.0 and float(heat.max()) <= 1.0


def test_sigmoid_of_logits() -> None:
    np.testing.assert_allclose(heatmap(np.zeros((4, 4)), 8, 8), 0.5)
    np.testing.assert_allclose(heatmap(np.full((4, 4), 2.0), 8, 8), 1 / (1 + np.exp(-2.0)))
    assert float(heatmap(np.full((3, 3), -1e6), 5, 5).max()) == 0.0  # no overflow warning


def test_blob_lands_over_the_same_place_in_the_image() -> None:
    cam = np.zeros((20, 20))
    cam[6, 5] = 10.0
    heat = heatmap(cam, 320, 320)
    row, col = np.unravel_index(int(np.argmax(heat)), heat.shape)
    # Cell (6, 5) covers rows 96-111 and columns 80-95 of a 320 x 320 image.
    assert 96 <= row < 112
    assert 80 <= col < 96


def test_upsampling_is_bilinear_between_cell_centres() -> None:
    cam = np.array([[0.0, 4.0]])
    line = upsample(cam, 1, 8)[0]
    # Cell centres sit at pixels 1.5 and 5.5; values are held beyond them.
    np.testing.assert_allclose(line, [0, 0, 0.5, 1.5, 2.5, 3.5, 4, 4])


@pytest.mark.parametrize("cam", [np.zeros((2, 3, 4)), np.zeros((0, 4)), np.array([[0.0, np.nan]])])
def test_unusable_maps_are_refused(cam: np.ndarray) -> None:
    with pytest.raises(ReportError):
        heatmap(cam, 16, 16)
