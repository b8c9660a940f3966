"""Boxes from class activation maps and study-level aggregation."""

from __future__ import annotations

import numpy as np

from diagnostics.package import ModelPackage
from diagnostics.results import MAX_BOX_SHARE, box_share, localised
from diagnostics.screening.interpret import cam_box, localised_box, probabilities, study_findings


def _blob(h: int, w: int, cy: float, cx: float, sigma: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2)).astype(np.float32) * 4 - 2


def test_box_surrounds_the_peak_in_image_pixels() -> None:
    cam = _blob(20, 20, cy=5, cx=14, sigma=1.0)
    x0, y0, x1, y1 = cam_box(cam, rows=400, columns=800)
    # Cell (5, 14) of a 20 x 20 grid covers x 560..600 and y 100..120 of an 800 x 400 image.
    assert x0 < 580 < x1 and y0 < 110 < y1
    assert (x1 - x0) < 200 and (y1 - y0) < 100


def test_box_is_the_component_holding_the_peak() -> None:
    cam = _blob(20, 20, 4, 4, 1.0) + _blob(20, 20, 15, 15, 1.0) * 0.9 + 1.8
    _x0, _y0, x1, y1 = cam_box(cam, 200, 200)
    assert x1 <= 100 and y1 <= 100


def test_flat_map_gives_the_whole_image() -> None:
    assert cam_box(np.zeros((10, 10), np.float32), 50, 60) == (0, 0, 60, 50)


def test_study_takes_the_strongest_instance(bundled: ModelPackage) -> None:
    manifest = bundled.manifest
    k = len(manifest.findings)
    logits = np.array([[-6.0] * k, [6.0] * k])
    probs = probabilities(manifest, logits)
    assert (probs[1] > probs[0]).all()
    cams = np.stack([np.zeros((k, 10, 10)), np.stack([_blob(10, 10, 2, 7, 1.0)] * k)])
    findings = study_findings(manifest, ["a", "b"], probs, cams, [(100, 100), (300, 200)])
    for finding in findings:
        assert finding.sop_instance_uid == "b"
        assert finding.flagged and finding.bbox is not None
        x0, y0, x1, y1 = finding.bbox
        assert x1 <= 200 and y1 <= 300 and x0 < 150 < x1 and y0 < 75 < y1
    assert study_findings(manifest, [], probs[:0], cams[:0], []) == []


def test_localisation_rule_is_a_share_of_the_image() -> None:
    assert localised((0, 0, 40, 100), 100, 100)  # exactly MAX_BOX_SHARE of the image
    assert not localised((0, 0, 41, 100), 100, 100)
    assert not localised((0, 0, 468, 512), 512, 512)  # the whole-chest nodule box
    assert not localised(None, 100, 100)
    assert box_share((10, 20, 30, 60), 100, 200) == 800 / 20000
    assert MAX_BOX_SHARE == 0.4


def test_spread_out_activation_is_flagged_but_not_localised(bundled: ModelPackage) -> None:
    """A flagged finding whose activation covers most of the image gets no box (so no region
    in the overlay, presentation state or SR); a compact one keeps its box."""
    manifest = bundled.manifest
    k = len(manifest.findings)
    probs = probabilities(manifest, np.array([[6.0] * k, [6.0] * k]))
    spread = np.ones((10, 10))
    spread[0, 0] = 0.0  # everything but one corner cell is above the region level
    cams = np.stack([np.stack([spread] * k), np.stack([_blob(10, 10, 2, 7, 1.0)] * k)])
    wide = study_findings(manifest, ["a"], probs[:1], cams[:1], [(512, 512)])
    assert all(f.flagged and f.bbox is None for f in wide)
    assert localised_box(cams[0, 0], 512, 512) is None
    narrow = study_findings(manifest, ["b"], probs[1:], cams[1:], [(512, 512)])
    assert all(f.flagged and f.bbox is not None for f in narrow)
    assert all(box_share(f.bbox, 512, 512) <= MAX_BOX_SHARE for f in narrow if f.bbox)
