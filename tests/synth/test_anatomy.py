"""Geometric and radiometric truth of the chest phantom, its findings and image formation.

Every expectation is measured independently on the returned arrays, so a renderer that drew the
wrong heart size, leaked a nodule onto the heart or mislabelled a box would fail here.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from scipy import ndimage

from diagnostics.synth import exposure
from diagnostics.synth.anatomy import (
    ChestPhantom,
    Geometry,
    render_chest,
    sample_habitus,
)
from diagnostics.synth.exposure import expose
from diagnostics.synth.findings import (
    DENSITY_RANGE,
    ConsolidationTruth,
    add_consolidation,
    add_nodule,
    nodule_contrast,
    sample_nodule_diameter_mm,
)

SMALL = Geometry(256, 256, 1.6)
MEDIUM = Geometry(512, 512, 0.8)


def _render(
    seed: int, geometry: Geometry = SMALL, view: str = "PA", ctr: float = 0.45
) -> ChestPhantom:
    rng = np.random.default_rng(seed)
    return render_chest(geometry, sample_habitus(rng), view, ctr, rng)


def _copy(phantom: ChestPhantom) -> ChestPhantom:
    return dataclasses.replace(phantom, attenuation=phantom.attenuation.copy())


@pytest.fixture(scope="module")
def pa() -> ChestPhantom:
    return _render(1, MEDIUM, "PA", 0.44)


@pytest.fixture(scope="module")
def small_phantoms() -> list[ChestPhantom]:
    return [_render(seed, SMALL, "AP" if seed % 2 else "PA", 0.45) for seed in range(10, 16)]


def _measured_ctr(phantom: ChestPhantom) -> float:
    """CTR from the masks alone: widest lung-to-lung row over the heart's column extent."""
    lung = phantom.lung_mask
    rows = np.flatnonzero(lung.any(axis=1))
    widths = [np.flatnonzero(lung[r])[-1] + 1 - np.flatnonzero(lung[r])[0] for r in rows]
    heart_cols = np.flatnonzero(phantom.heart_mask.any(axis=0))
    return float((heart_cols[-1] + 1 - heart_cols[0]) / max(widths))


# --------------------------------------------------------------------------------------------
# anatomy


@pytest.mark.parametrize(
    ("seed", "geometry", "view", "ctr"),
    [
        (2, SMALL, "PA", 0.36),
        (3, SMALL, "AP", 0.48),
        (4, SMALL, "PA", 0.68),
        (5, MEDIUM, "AP", 0.6),
        (6, Geometry(300, 240, 1.4), "PA", 0.53),
        (7, Geometry(200, 256, 1.9), "AP", 0.4),
    ],
)
def test_rendered_ctr_matches_request(seed: int, geometry: Geometry, view: str, ctr: float) -> None:
    phantom = _render(seed, geometry, view, ctr)
    measured = _measured_ctr(phantom)
    assert measured == pytest.approx(ctr, abs=0.01)
    assert phantom.ctr == pytest.approx(measured, abs=1e-9)
    h0, h1 = phantom.heart_bounds_px
    t0, t1 = phantom.thorax_bounds_px
    assert phantom.ctr == pytest.approx((h1 - h0) / (t1 - t0))
    assert t0 < h0 < h1 < t1


def test_masks_are_plausible(pa: ChestPhantom) -> None:
    lung, heart = pa.lung_mask, pa.heart_mask
    assert lung.dtype == bool and heart.dtype == bool
    assert not (lung & heart).any()
    labels, n = ndimage.label(lung)
    sizes = np.sort(np.bincount(labels.ravel())[1:])[::-1]
    assert n >= 2 and sizes[1] > 0.5 * sizes[0]  # two lungs of similar size
    field = lung.size
    assert 0.12 < lung.sum() / field < 0.45
    assert 0.02 < heart.sum() / field < 0.15
    for mask in (lung, heart):  # the patient fits in the field
        assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def test_heart_bulk_is_on_image_right(pa: ChestPhantom) -> None:
    t0, t1 = pa.thorax_bounds_px
    mid = 0.5 * (t0 + t1)
    cols = np.nonzero(pa.heart_mask)[1]
    assert (cols > mid).mean() > 0.55


def test_lungs_darker_than_heart_and_abdomen(pa: ChestPhantom) -> None:
    att = pa.attenuation
    assert att.dtype == np.float32 and att.shape == (512, 512)
    assert np.isfinite(att).all() and att.min() >= 0.0
    lung = float(np.median(att[pa.lung_mask]))
    heart = float(np.median(att[pa.heart_mask]))
    bottom = int(np.flatnonzero(pa.lung_mask.any(axis=1))[-1])
    t0, t1 = pa.thorax_bounds_px
    abdomen = float(np.median(att[bottom + 20 : bottom + 60, t0:t1]))
    assert heart > lung + 0.8
    assert abdomen > lung + 0.8
    assert att[:, :3].min() < 0.2 or att[:, -3:].min() < 0.2  # air beside the body


def test_right_hemidiaphragm_is_higher() -> None:
    habitus = dataclasses.replace(
        sample_habitus(np.random.default_rng(8)), right_dome_raise_mm=22.0, tilt_deg=0.0
    )
    phantom = render_chest(MEDIUM, habitus, "PA", 0.42, np.random.default_rng(9))
    lung = phantom.lung_mask
    t0, t1 = phantom.thorax_bounds_px
    mid, half = 0.5 * (t0 + t1), 0.5 * (t1 - t0)

    def summit(sign: int) -> float:  # lowest lung row over the lateral half of each dome
        cols = [int(mid + sign * f * half) for f in np.linspace(0.65, 0.85, 9)]
        assert not phantom.heart_mask[:, cols].any()
        return float(np.mean([np.flatnonzero(lung[:, c])[-1] for c in cols]))

    right, left = summit(-1), summit(+1)  # patient's right is the image left
    assert right < left - 10.0 / 0.8  # at least ~10 mm higher


def test_heart_mask_matches_rendered_heart_border(pa: ChestPhantom) -> None:
    """The mask's left heart border is where the attenuation drops into the lung."""
    rows = np.flatnonzero(pa.heart_mask.any(axis=1))
    offsets = []
    for r in rows[len(rows) // 3 : 2 * len(rows) // 3]:
        edge = int(np.flatnonzero(pa.heart_mask[r])[-1])  # last heart pixel on the row
        if not pa.lung_mask[r, edge + 1 : edge + 6].all():
            continue
        profile = pa.attenuation[r, edge - 8 : edge + 9].astype(float)
        steepest = int(np.argmin(np.diff(profile)))  # drop between pixel i and i + 1
        offsets.append(steepest - 8)
    assert len(offsets) > 10
    assert abs(float(np.median(offsets))) <= 1.0


def test_reproducible_by_seed() -> None:
    a, b, c = _render(21), _render(21), _render(22)
    np.testing.assert_array_equal(a.attenuation, b.attenuation)
    np.testing.assert_array_equal(a.lung_mask, b.lung_mask)
    np.testing.assert_array_equal(a.heart_mask, b.heart_mask)
    assert not np.array_equal(a.attenuation, c.attenuation)
    img_a = expose(a.attenuation, np.random.default_rng(5))
    img_b = expose(b.attenuation, np.random.default_rng(5))
    np.testing.assert_array_equal(img_a, img_b)


def test_resolution_independent_anatomy() -> None:
    """Same patient and seed on two grids: the same anatomy in mm, same CTR."""
    coarse = _render(31, Geometry(200, 200, 2.0), "PA", 0.5)
    fine = _render(31, Geometry(500, 500, 0.8), "PA", 0.5)
    for ph in (coarse, fine):
        assert ph.ctr == pytest.approx(0.5, abs=0.01)
    width = [
        (p.thorax_bounds_px[1] - p.thorax_bounds_px[0]) * p.geometry.spacing_mm
        for p in (coarse, fine)
    ]
    assert width[0] == pytest.approx(width[1], rel=0.03)
    area = [p.lung_mask.mean() for p in (coarse, fine)]
    assert area[0] == pytest.approx(area[1], rel=0.05)


def test_body_shrinks_to_fit_a_narrow_field() -> None:
    habitus = dataclasses.replace(
        sample_habitus(np.random.default_rng(40)), thorax_width_mm=335.0, soft_tissue_mm=45.0
    )
    narrow = Geometry(500, 410, 0.84)  # 344 mm wide, like a 2500 x 2048 detector
    phantom = render_chest(narrow, habitus, "PA", 0.45, np.random.default_rng(41))
    assert phantom.body_scale < 1.0
    t0, t1 = phantom.thorax_bounds_px
    assert t0 > 5 and t1 < narrow.columns - 5
    assert (t1 - t0) * narrow.spacing_mm == pytest.approx(335.0 * phantom.body_scale, rel=0.03)
    assert phantom.ctr == pytest.approx(0.45, abs=0.01)


def test_sampled_habitus_ranges() -> None:
    rng = np.random.default_rng(0)
    bodies = [sample_habitus(rng) for _ in range(300)]
    widths = np.array([b.thorax_width_mm for b in bodies])
    heights = np.array([b.lung_height_mm for b in bodies])
    assert widths.min() >= 240 and widths.max() <= 340 and widths.std() > 10
    assert heights.min() >= 200 and heights.max() <= 290
    assert all(b.soft_tissue_mm > 0 for b in bodies)
    assert np.corrcoef(widths, heights)[0, 1] > 0.3  # big chests are tall too
    assert len({b.anatomy_seed for b in bodies}) == len(bodies)


def test_render_rejects_bad_arguments() -> None:
    habitus = sample_habitus(np.random.default_rng(0))
    rng = np.random.default_rng(0)
    for view, ctr in (("LAT", 0.45), ("pa", 0.45), ("PA", 0.2), ("PA", 0.85), ("PA", math.nan)):
        with pytest.raises(ValueError):
            render_chest(SMALL, habitus, view, ctr, rng)
    with pytest.raises(ValueError):
        render_chest(SMALL, dataclasses.replace(habitus, thorax_width_mm=-5.0), "PA", 0.45, rng)
    for args in ((0, 256, 1.0), (256, 256, 0.0), (256, 256, -1.0), (256, 256, math.inf)):
        with pytest.raises(ValueError):
            Geometry(*args)


# --------------------------------------------------------------------------------------------
# nodules


@pytest.mark.parametrize(
    ("seed", "diameter"), [(50, 3.0), (51, 5.0), (52, 10.0), (53, 20.0), (54, 30.0)]
)
def test_nodule_geometry(pa: ChestPhantom, seed: int, diameter: float) -> None:
    phantom = _copy(pa)
    truth = add_nodule(phantom, diameter, np.random.default_rng(seed))
    added = phantom.attenuation - pa.attenuation
    spot = added > 0
    assert (added >= 0).all()
    assert pa.lung_mask[spot].all()  # fully inside a lung field ...
    assert not pa.heart_mask[spot].any()  # ... so never on the heart
    cx, cy = truth.centre_px
    assert pa.lung_mask[round(cy), round(cx)]
    # diameter: equivalent-disc diameter and extent of the footprint, in patient mm
    mm_per_px = pa.geometry.spacing_mm / pa.body_scale
    rows, cols = np.nonzero(spot)
    extent = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1) * mm_per_px
    assert extent == pytest.approx(diameter, abs=2.0 * mm_per_px)
    assert 2.0 * math.sqrt(spot.sum() / math.pi) * mm_per_px == pytest.approx(
        diameter, abs=2.0 * mm_per_px
    )
    # centre and peak
    assert np.average(cols, weights=added[spot]) == pytest.approx(cx, abs=0.5)
    assert np.average(rows, weights=added[spot]) == pytest.approx(cy, abs=0.5)
    assert added.max() <= truth.contrast + 1e-6
    if diameter >= 10:
        assert added.max() == pytest.approx(truth.contrast, rel=0.05)
    assert truth.diameter_mm == diameter


def test_nodule_raises_local_display_intensity(pa: ChestPhantom) -> None:
    phantom = _copy(pa)
    truth = add_nodule(phantom, 15.0, np.random.default_rng(60))
    without = expose(pa.attenuation, np.random.default_rng(61)).astype(float)
    with_nodule = expose(phantom.attenuation, np.random.default_rng(61)).astype(float)
    yy, xx = np.indices(without.shape)
    r = np.hypot(xx - truth.centre_px[0], yy - truth.centre_px[1])
    radius = 7.5 / (pa.geometry.spacing_mm / pa.body_scale)
    disc = r < 0.7 * radius
    ring = (r > radius + 2) & (r < 2 * radius + 2)
    gain = with_nodule[disc].mean() - without[disc].mean()
    assert gain > 0.02 * 4095
    assert gain > 3.0 * (with_nodule[ring].mean() - without[ring].mean())


def test_nodule_diameter_distribution() -> None:
    rng = np.random.default_rng(0)
    d = np.array([sample_nodule_diameter_mm(rng) for _ in range(4000)])
    assert d.min() >= 3.0 and d.max() <= 30.0
    early = (d <= 10.0).mean()
    assert 0.36 < early < 0.44
    assert (d > 20.0).mean() > 0.15  # large ones exist too


def test_nodule_contrast_scale() -> None:
    rng = np.random.default_rng(1)
    base = _render(70)
    lo = nodule_contrast(3.0, DENSITY_RANGE[0])
    hi = nodule_contrast(30.0, DENSITY_RANGE[1])
    contrasts = [add_nodule(_copy(base), d, rng).contrast for d in (3.0, 8.0, 15.0, 25.0) * 5]
    assert all(lo - 1e-9 <= c <= hi + 1e-9 for c in contrasts)
    assert max(contrasts) > 2.5 * min(contrasts)  # some subtle, some obvious
    assert nodule_contrast(20.0, 1.0) > nodule_contrast(5.0, 1.0)


def _band_pass_snr(seed: int, diameter_mm: float) -> float:
    """A nodule's peak over the lung's clutter at the nodule's own scale, from a pair of
    renders that differ only by the nodule, at the bundled model's geometry (512 px at
    0.8 mm, resampled to its 320 px input)."""
    rng = np.random.default_rng([seed, 7])
    phantom = render_chest(Geometry(512, 512, 0.8), sample_habitus(rng), "PA", 0.42, rng)
    without = phantom.attenuation.copy()
    truth = add_nodule(phantom, diameter_mm, rng)
    state = rng.bit_generator.state
    images = []
    for attenuation in (phantom.attenuation, without):
        rng.bit_generator.state = state  # the same exposure and noise for both
        images.append(ndimage.zoom(expose(attenuation, rng).astype(np.float32), 0.625, order=1))
    lung = ndimage.zoom(phantom.lung_mask.astype(np.float32), 0.625, order=0) > 0.5
    sigma = max(diameter_mm / 0.8 * 0.625 / 2.5, 0.8)

    def band(image: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(image, sigma) - ndimage.gaussian_filter(image, 3 * sigma)

    x, y = (round(c * 0.625) for c in truth.centre_px)
    return float(band(images[0] - images[1])[y, x] / band(images[1])[lung].std())


@pytest.mark.slow
def test_small_nodules_stand_out_of_the_clutter() -> None:
    """Early-stage nodules must be findable: at the earlier contrast scale their median was
    about 0.6 (and a trained model scored them at chance)."""
    snr = [_band_pass_snr(seed, d) for seed, d in enumerate((4.0, 5.0, 6.0, 7.0, 8.0, 9.0) * 2)]
    assert float(np.median(snr)) > 1.3
    assert min(snr) > 0.7


def test_nodule_rejects_bad_diameter(pa: ChestPhantom) -> None:
    for d in (2.0, 31.0, math.nan):
        with pytest.raises(ValueError):
            add_nodule(_copy(pa), d, np.random.default_rng(0))


# --------------------------------------------------------------------------------------------
# consolidation


def _check_consolidation(
    before: ChestPhantom, after: ChestPhantom, truth: ConsolidationTruth
) -> None:
    added = after.attenuation - before.attenuation
    assert (added >= -1e-7).all()
    spot = added > 0
    assert spot.any()
    x0, y0, x1, y1 = truth.bbox_px
    inside = np.zeros_like(spot)
    inside[y0:y1, x0:x1] = True
    assert not (spot & ~inside).any()  # the box covers all added opacity ...
    assert spot[y0:y1, x0].any() and spot[y0:y1, x1 - 1].any()  # ... and is tight
    assert spot[y0, x0:x1].any() and spot[y1 - 1, x0:x1].any()
    assert before.lung_mask[spot].all()  # confined to aerated lung
    assert not before.heart_mask[spot].any()
    # confined to one lung: all on one side of the mediastinum
    labels, _ = ndimage.label(before.lung_mask)
    assert len(set(np.unique(labels[spot])) - {0}) == 1
    # confined to one vertical third of that lung
    lung = labels == np.unique(labels[spot])[0]
    rows = np.flatnonzero(lung.any(axis=1))
    third = (rows[-1] + 1 - rows[0]) / 3.0
    assert (y1 - y0) <= third + 2
    assert truth.extent in ("segmental", "lobar")
    assert 0.0 < truth.area_fraction < 0.4
    covered = spot.sum() / before.lung_mask.sum()
    assert truth.area_fraction <= covered + 1e-9


def test_consolidation_truth(small_phantoms: list[ChestPhantom]) -> None:
    extents: dict[str, list[float]] = {"segmental": [], "lobar": []}
    for i, base in enumerate(small_phantoms * 2):
        phantom = _copy(base)
        truth = add_consolidation(phantom, np.random.default_rng(100 + i))
        _check_consolidation(base, phantom, truth)
        extents[truth.extent].append(truth.area_fraction)
    assert extents["segmental"] and extents["lobar"]
    assert np.mean(extents["lobar"]) > np.mean(extents["segmental"])


def test_consolidation_is_visible(pa: ChestPhantom) -> None:
    phantom = _copy(pa)
    truth = add_consolidation(phantom, np.random.default_rng(7))
    x0, y0, x1, y1 = truth.bbox_px
    added = (phantom.attenuation - pa.attenuation)[y0:y1, x0:x1]
    assert added.max() > 0.2  # well above nodule-level contrast at its densest
    _check_consolidation(pa, phantom, truth)


def test_consolidation_reproducible(pa: ChestPhantom) -> None:
    a, b = _copy(pa), _copy(pa)
    ta = add_consolidation(a, np.random.default_rng(3))
    tb = add_consolidation(b, np.random.default_rng(3))
    assert ta == tb
    np.testing.assert_array_equal(a.attenuation, b.attenuation)


# --------------------------------------------------------------------------------------------
# image formation


def test_expose_range_and_orientation(pa: ChestPhantom) -> None:
    img = expose(pa.attenuation, np.random.default_rng(0))
    assert img.dtype == np.uint16 and img.shape == pa.attenuation.shape
    assert int(img.max()) <= 4095
    lo, hi = np.percentile(img, [1, 99])
    assert hi - lo > 0.5 * 4095  # a sensible part of the 12-bit range
    assert (img == img.max()).mean() < 0.15 and (img == 0).mean() < 0.15  # not clipped flat
    # MONOCHROME2: denser is brighter
    lung = np.median(img[pa.lung_mask])
    heart = np.median(img[pa.heart_mask])
    air = np.median(img[pa.attenuation < 0.05]) if (pa.attenuation < 0.05).any() else 0.0
    assert air < lung < heart


def test_expose_other_bit_depths(pa: ChestPhantom) -> None:
    img = expose(pa.attenuation, np.random.default_rng(0), bits_stored=10)
    assert img.max() <= 1023 and img.max() > 600
    for bits in (4, 17):
        with pytest.raises(ValueError):
            expose(pa.attenuation, np.random.default_rng(0), bits_stored=bits)
    bad = pa.attenuation.copy()
    bad[5, 5] = np.nan
    for arr in (bad, np.zeros((4, 4, 3), np.float32)):
        with pytest.raises(ValueError):
            expose(arr, np.random.default_rng(0))


def test_expose_varies_between_studies(pa: ChestPhantom) -> None:
    a = expose(pa.attenuation, np.random.default_rng(1)).astype(float)
    b = expose(pa.attenuation, np.random.default_rng(2)).astype(float)
    assert np.abs(a - b).mean() > 20  # exposure, processing and noise differ per study


def test_quantum_noise_grows_as_signal_falls() -> None:
    """Poisson statistics: relative noise goes as 1/sqrt(signal), not 1/signal."""
    flat = np.ones((256, 256), dtype=np.float32)
    bright = exposure._detect(flat * 0.2, np.random.default_rng(0))
    dim = exposure._detect(flat * 0.01, np.random.default_rng(0))
    rel_bright = bright[8:-8, 8:-8].std() / bright.mean()
    rel_dim = dim[8:-8, 8:-8].std() / dim.mean()
    assert rel_dim / rel_bright == pytest.approx(math.sqrt(20.0), rel=0.25)
