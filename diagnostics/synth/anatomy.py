"""Normal chest radiograph phantom: patient habitus sampling and attenuation rendering.

The project has no patient data, so models are trained and tested on renders whose ground truth
(lung and heart masks, cardiothoracic ratio, findings) is known exactly.

Coordinates.  Anatomy is described in *body millimetres*: x to the image right (the patient's
left, because radiographs are displayed as if facing the patient), y downward, origin on the
thoracic midline at the level of the lung apices.  Everything is evaluated once on a body-aligned
work grid of 640-1152 pixels (so cost barely depends on the output size), then resampled by a
single affine map (body scale, tilt, positioning) onto the output pixel grid.  Masks are
thresholds of resampled signed level fields (millimetres, > 0 inside), so their borders are
placed to a fraction of a pixel at any output resolution.

Attenuation unit.  Dimensionless line integral (mu * thickness) at an effective ~70 keV: soft
tissue ``MU_SOFT`` per mm, each mm of aerated lung depth removes ``AIR_DEFICIT`` (lung is ~20 %
tissue), cortical bone adds roughly 0.03 per mm.  Typical values: lung fields ~2, heart ~3.5,
abdomen ~4.5, air outside the body 0.

The parts are drawn by their own modules: `phantom` (units, the detector and body types, the
shapes everything is drawn with), `plan` (every anatomical number of one render), `thorax`
(lungs, mediastinum, diaphragm, heart, body outline, air), `bones`, `vessels` (vessel trees and
texture) and `projection` (work grid, detector frame, resampling). This module composes them:
habitus sampling, the body render, the heart fitted to the requested CTR, and `render_chest`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from diagnostics.synth.bones import bones
from diagnostics.synth.phantom import (
    AIR_DEFICIT,
    F32,
    MU_SOFT,
    ChestPhantom,
    Geometry,
    Habitus,
    Mask,
    smoothstep,
)
from diagnostics.synth.plan import Plan, make_plan
from diagnostics.synth.projection import Frame, Grid, place_body, resample, work_grid
from diagnostics.synth.thorax import (
    HeartShape,
    LungFields,
    airway_air,
    body_thickness,
    breasts,
    heart_fields,
    heart_shape,
    lung_fields,
    stomach_air,
)
from diagnostics.synth.vessels import hilar, lung_texture, vessel_trees

__all__ = [
    "AIR_DEFICIT",
    "CTR_RANGE",
    "MU_SOFT",
    "VIEWS",
    "ChestPhantom",
    "Geometry",
    "Habitus",
    "heart_bounds",
    "render_chest",
    "sample_habitus",
    "thorax_bounds",
]

VIEWS = ("PA", "AP")
CTR_RANGE = (0.25, 0.8)


def sample_habitus(rng: np.random.Generator) -> Habitus:
    """Draw an adult body; correlated so that big chests have deep, tall lungs."""
    width = float(np.clip(rng.normal(288.0, 22.0), 240.0, 340.0))
    height = float(np.clip(0.82 * width + rng.normal(0.0, 15.0), 200.0, 290.0))
    soft = float(np.clip(rng.lognormal(math.log(26.0), 0.35), 10.0, 70.0))
    depth = float(np.clip(0.68 * width + 1.1 * (soft - 26.0) + rng.normal(0.0, 12.0), 170.0, 300.0))
    female = bool(rng.random() < 0.45)
    return Habitus(
        thorax_width_mm=width,
        lung_height_mm=height,
        soft_tissue_mm=soft,
        chest_depth_mm=depth,
        rib_spacing_mm=height / float(rng.uniform(9.3, 10.4)),
        rib_droop=float(rng.uniform(0.8, 1.25)),
        shoulder_height_mm=float(rng.uniform(5.0, 45.0)),
        neck_width_mm=float(np.clip(0.36 * width + rng.normal(0.0, 8.0), 80.0, 140.0)),
        dome_height_mm=float(rng.uniform(16.0, 34.0)),
        right_dome_raise_mm=float(rng.uniform(6.0, 24.0)),
        tilt_deg=float(np.clip(rng.normal(0.0, 1.5), -4.0, 4.0)),
        mediastinal_shift_mm=float(np.clip(rng.normal(0.0, 3.0), -8.0, 8.0)),
        aortic_knob_mm=float(rng.uniform(11.0, 19.0)),
        heart_left_fraction=float(rng.uniform(0.6, 0.72)),
        breast_mm=float(rng.uniform(25.0, 60.0)) if female else 0.0,
        anatomy_seed=int(rng.integers(0, 2**31 - 1)),
    )


# --------------------------------------------------------------------------------------------
# the body-grid rendering


@dataclass(frozen=True)
class _BodyRender:
    attenuation: F32
    lung_air: F32


def _render_body(
    p: Plan, grid: Grid, lungs: LungFields, heart: HeartShape, heart_scale: float
) -> _BodyRender:
    """Attenuation on the body grid: soft tissue minus air, plus bone and vessels."""
    xs, ys = grid.axes()
    _, chord = heart_fields(p, heart, heart_scale, xs, ys)
    air = np.maximum(lungs.air - p.heart_depth * chord, 0.12 * lungs.air)
    body = body_thickness(p, xs, ys) + breasts(p, xs, ys)
    air = np.minimum(air, 0.85 * body)
    visible = smoothstep(air, 4.0, 60.0)
    vessels = (vessel_trees(p, grid) + hilar(p, xs, ys)) * visible
    texture = lung_texture(p, grid) * smoothstep(air, 0.0, 80.0)
    other_air = airway_air(p, xs, ys) + stomach_air(p, xs, ys, lungs.dome)
    atten = MU_SOFT * body - AIR_DEFICIT * air - MU_SOFT * np.minimum(other_air, 0.5 * body)
    atten = atten + (bones(p, xs, ys) + vessels + texture) * (body > 1.0)
    return _BodyRender(
        attenuation=np.clip(atten, 0.0, None).astype(np.float32),
        lung_air=air.astype(np.float32),
    )


# --------------------------------------------------------------------------------------------
# masks and the cardiothoracic ratio


def thorax_bounds(lung_mask: Mask) -> tuple[int, int]:
    """Half-open column bounds of the inner thorax on its widest row of the lung mask."""
    rows = np.flatnonzero(lung_mask.any(axis=1))
    if rows.size == 0:
        raise ValueError("empty lung mask")
    sub = lung_mask[rows]
    left = np.argmax(sub, axis=1)
    right = sub.shape[1] - np.argmax(sub[:, ::-1], axis=1)
    best = int(np.argmax(right - left))
    return int(left[best]), int(right[best])


def heart_bounds(heart_mask: Mask) -> tuple[int, int]:
    """Half-open column bounds of the heart at its widest (clinical transverse diameter)."""
    cols = np.flatnonzero(heart_mask.any(axis=0))
    if cols.size == 0:
        raise ValueError("empty heart mask")
    return int(cols[0]), int(cols[-1]) + 1


def _heart_mask(
    p: Plan, shape: HeartShape, scale: float, grid: Grid, frame: Frame, out: tuple[int, int]
) -> Mask:
    """Full-resolution heart mask (only its bounding box is resampled)."""
    xs, ys = grid.axes()
    level, _ = heart_fields(p, shape, scale, xs, ys)
    inside = np.argwhere(level > -2.0 * grid.step)
    mask = np.zeros(out, dtype=bool)
    if inside.size == 0:
        return mask
    bx = grid.x0 + grid.step * inside[:, 1]
    by = grid.y0 + grid.step * inside[:, 0]
    px, py = frame.to_pixel(bx, by)
    c0, c1 = max(int(px.min()) - 2, 0), min(int(px.max()) + 3, out[1])
    r0, r1 = max(int(py.min()) - 2, 0), min(int(py.max()) + 3, out[0])
    if c1 <= c0 or r1 <= r0:
        return mask
    sub = resample(level, grid, frame, (r1 - r0, c1 - c0), origin=(r0, c0))
    mask[r0:r1, c0:c1] = sub > 0
    return mask


def _fit_heart(
    p: Plan, ctr: float, lung_region: Mask, grid: Grid, frame: Frame
) -> tuple[HeartShape, float, Mask, Mask]:
    """Scale the heart until its measured width over the measured thorax equals ``ctr``.

    The target is the nearest whole pixel, so the rendered CTR is within 0.5 / thorax pixels
    of the request (under 0.01 for any thorax wider than 50 pixels).
    """
    out = (lung_region.shape[0], lung_region.shape[1])
    shape = heart_shape(p, ctr * 2.0 * p.hw)
    scale, lo, hi = 1.0, 0.0, math.inf
    best: tuple[float, float, Mask, Mask] | None = None
    for _ in range(10):
        heart = _heart_mask(p, shape, scale, grid, frame, out)
        lungs = lung_region & ~heart
        t0, t1 = thorax_bounds(lungs)
        h0, h1 = heart_bounds(heart)
        target = max(round(ctr * (t1 - t0)), 1)
        err = abs((h1 - h0) / (t1 - t0) - ctr)
        if best is None or err < best[0]:
            best = (err, scale, heart, lungs)
        if h1 - h0 == target:
            break
        # ratio steps until the target width is bracketed, then bisection: the width is a
        # step function of scale and may jump by two pixels (both borders move)
        if h1 - h0 < target:
            lo = scale
        else:
            hi = scale
        ratio = scale * target / (h1 - h0)
        scale = ratio if (lo < ratio < hi) else 0.5 * (lo + hi)
    assert best is not None
    return shape, best[1], best[2], best[3]


# --------------------------------------------------------------------------------------------
# public entry point

_HABITUS_LIMITS = {
    "thorax_width_mm": (150.0, 450.0),
    "lung_height_mm": (120.0, 380.0),
    "soft_tissue_mm": (0.0, 150.0),
    "chest_depth_mm": (100.0, 400.0),
    "rib_spacing_mm": (10.0, 50.0),
}


def _check_habitus(habitus: Habitus) -> None:
    """Reject bodies the geometry model was not built for (it would draw nonsense)."""
    for name, (lo, hi) in _HABITUS_LIMITS.items():
        value = float(getattr(habitus, name))
        if not (math.isfinite(value) and lo <= value <= hi):
            raise ValueError(f"habitus.{name} must be within {lo}..{hi}, got {value}")


def render_chest(
    geometry: Geometry, habitus: Habitus, view: str, ctr: float, rng: np.random.Generator
) -> ChestPhantom:
    """Render a normal chest (apart from heart size) with its masks and measured CTR.

    The body is shrunk uniformly if the field is narrower than the patient.  On AP films the
    scapulae overlie the upper lateral lungs, the clavicles project higher and flatter, the
    inspiration is shallower and the mediastinum is magnified; the heart is still drawn at the
    requested CTR so that labels stay truthful.
    """
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    if not (CTR_RANGE[0] <= ctr <= CTR_RANGE[1]):
        raise ValueError(f"ctr must be within {CTR_RANGE}, got {ctr}")
    _check_habitus(habitus)
    plan = make_plan(habitus, view, ctr, rng)
    frame = place_body(geometry, habitus, plan, rng)
    grid = work_grid(geometry, frame)
    out = (geometry.rows, geometry.columns)
    xs, ys = grid.axes()
    fields = lung_fields(plan, xs, ys)
    region = resample(fields.region, grid, frame, out) > 0
    shape, scale, heart, lungs = _fit_heart(plan, ctr, region, grid, frame)
    body = _render_body(plan, grid, fields, shape, scale)
    atten = resample(body.attenuation, grid, frame, out, smooth=True)
    air = resample(body.lung_air, grid, frame, out, smooth=True)
    t_bounds, h_bounds = thorax_bounds(lungs), heart_bounds(heart)
    measured = (h_bounds[1] - h_bounds[0]) / (t_bounds[1] - t_bounds[0])
    return ChestPhantom(
        geometry=geometry,
        view=view,
        attenuation=atten,
        lung_mask=lungs,
        heart_mask=heart,
        ctr=float(measured),
        thorax_bounds_px=t_bounds,
        heart_bounds_px=h_bounds,
        body_scale=frame.scale,
        lung_air_mm=air,
    )
