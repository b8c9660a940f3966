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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

F32 = npt.NDArray[np.float32]
Arr = npt.NDArray[Any]
Mask = npt.NDArray[np.bool_]

MU_SOFT = 0.019
"""Effective linear attenuation of soft tissue, 1/mm."""
AIR_DEFICIT = 0.8 * MU_SOFT
"""Attenuation removed per mm of aerated lung depth (lung is ~20 % tissue by volume)."""
VIEWS = ("PA", "AP")
CTR_RANGE = (0.25, 0.8)
# long side of the body work grid: sets cost and the finest anatomical detail.  Big detectors get
# a finer grid (sharper bone edges at full resolution) at a cost that still stays near 1 s.
_WORK_PIXELS = (640, 1152)


@dataclass(frozen=True)
class Geometry:
    """Detector pixel grid: the renderer works in mm so any grid gives the same anatomy."""

    rows: int
    columns: int
    spacing_mm: float

    def __post_init__(self) -> None:
        if int(self.rows) < 32 or int(self.columns) < 32:
            raise ValueError(
                f"geometry must be at least 32x32 pixels, got {self.rows}x{self.columns}"
            )
        if not (math.isfinite(self.spacing_mm) and self.spacing_mm > 0):
            raise ValueError(f"spacing_mm must be positive, got {self.spacing_mm}")

    @property
    def field_mm(self) -> tuple[float, float]:
        """Field of view (width, height) in mm."""
        return self.columns * self.spacing_mm, self.rows * self.spacing_mm


@dataclass(frozen=True)
class Habitus:
    """One patient's body; reused for all of that patient's studies so series stay consistent."""

    thorax_width_mm: float  # inner rib-to-rib width at the widest level
    lung_height_mm: float  # apex to costophrenic angle at full inspiration
    soft_tissue_mm: float  # lateral body-wall thickness; also drives overall density
    chest_depth_mm: float = 220.0  # antero-posterior body thickness
    rib_spacing_mm: float = 25.0  # vertical period of the posterior ribs
    rib_droop: float = 1.0  # how steeply posterior ribs slope down laterally (relative)
    shoulder_height_mm: float = 25.0  # shoulder top above the lung apices
    neck_width_mm: float = 105.0
    dome_height_mm: float = 25.0  # hemidiaphragm dome rise above the costophrenic angle
    right_dome_raise_mm: float = 15.0  # right hemidiaphragm higher than the left
    tilt_deg: float = 0.0  # in-plane body tilt, positive is clockwise on the display
    mediastinal_shift_mm: float = 0.0  # spine/mediastinum offset: proxy for axial rotation
    aortic_knob_mm: float = 15.0  # radius of the aortic arch
    heart_left_fraction: float = 0.66  # share of the heart width left of the midline
    breast_mm: float = 0.0  # breast soft-tissue thickness; 0 for none
    anatomy_seed: int = 0  # seeds the patient's vessel tree and lung texture


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


@dataclass
class ChestPhantom:
    """A rendered chest: attenuation map plus the masks its labels were measured on.

    Column bounds are half-open (left, right): width = right - left pixels.  ``body_scale`` is
    the image-mm per body-mm factor used to fit the body into the field (1.0 unless the field
    is narrower than the patient).  ``lung_air_mm`` is the aerated lung depth per pixel, which
    findings use to scale airspace opacity physically.
    """

    geometry: Geometry
    view: str
    attenuation: F32
    lung_mask: Mask
    heart_mask: Mask
    ctr: float
    thorax_bounds_px: tuple[int, int]
    heart_bounds_px: tuple[int, int]
    body_scale: float = 1.0
    lung_air_mm: F32 | None = None


# --------------------------------------------------------------------------------------------
# small numeric helpers


def _f32(x: Any) -> F32:
    """View any array-like as float32 (no copy when it already is)."""
    return np.asarray(x, dtype=np.float32)


def _smoothstep(x: Arr | float, e0: float, e1: float) -> Arr:
    t = np.clip((np.asarray(x, dtype=np.float32) - e0) / (e1 - e0), 0.0, 1.0)
    return _f32(t * t * (3.0 - 2.0 * t))


def _tube(q: Arr, wall: float = 0.25, core: float = 0.45) -> Arr:
    """Projected chord of a bone tube (cortex plus lighter marrow), q in [-1, 1], peak ~1."""
    outer = np.sqrt(np.clip(1.0 - q * q, 0.0, None))
    rin = 1.0 - wall
    inner = np.sqrt(np.clip(rin * rin - q * q, 0.0, None))
    return (outer - (1.0 - core) * inner) / (1.0 - (1.0 - core) * rin + 1e-6)


def _cylinder_chord(dist: Arr, radius: float) -> Arr:
    """Chord length (mm) through a cylinder at a perpendicular distance from its axis."""
    return 2.0 * np.sqrt(np.clip(radius * radius - dist * dist, 0.0, None))


def _segment_distance(xs: Arr, ys: Arr, p0: tuple[float, float], p1: tuple[float, float]) -> Arr:
    """Distance from every grid point to the segment p0-p1 (mm)."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    length2 = dx * dx + dy * dy
    t = np.clip(((xs - p0[0]) * dx + (ys - p0[1]) * dy) / length2, 0.0, 1.0)
    return np.hypot(xs - p0[0] - t * dx, ys - p0[1] - t * dy)


def _splat(shape: tuple[int, int], rows: Arr, cols: Arr, weights: Arr) -> F32:
    """Bilinear accumulation of weighted points into a grid (points off-grid are dropped)."""
    r0 = np.floor(rows).astype(np.int64)
    c0 = np.floor(cols).astype(np.int64)
    fr = (rows - r0).astype(np.float64)
    fc = (cols - c0).astype(np.float64)
    size = shape[0] * shape[1]
    out = np.zeros(size, dtype=np.float64)
    for dr, dc, w in (
        (0, 0, (1 - fr) * (1 - fc)),
        (0, 1, (1 - fr) * fc),
        (1, 0, fr * (1 - fc)),
        (1, 1, fr * fc),
    ):
        rr, cc = r0 + dr, c0 + dc
        ok = (rr >= 0) & (rr < shape[0]) & (cc >= 0) & (cc < shape[1])
        out += np.bincount(rr[ok] * shape[1] + cc[ok], weights=(weights * w)[ok], minlength=size)
    return out.reshape(shape).astype(np.float32)


# --------------------------------------------------------------------------------------------
# per-render plan: every anatomical number, derived once from habitus, view, ctr and rng


@dataclass(frozen=True)
class _Plan:
    seed: int
    hw: float  # inner thoracic half width
    height: float  # lung height (apex to costophrenic angle) for this study
    y_wide: float  # level of the widest thorax
    se_a: float  # lung apex superellipse half width
    se_uc: float  # its centre, from the thoracic midline
    shift: float  # mediastinal / spinal offset
    cp_y: tuple[float, float]  # costophrenic angle level (right, left)
    dome_h: tuple[float, float]  # dome rise (right, left)
    dome_peak: float  # dome summit distance from midline
    lung_depth: float  # antero-posterior lung depth at the base
    hb: float  # torso half width
    depth: float  # antero-posterior body thickness
    neck_hw: float
    shoulder_y: float  # acromion top (negative: above the apices)
    acromion_u: float
    knob: tuple[float, float, float]  # aortic arch centre (u, y) and radius
    carina_y: float
    rib_period: float
    rib_droop: float
    clavicle: tuple[float, float]  # medial and lateral end levels
    scapula_over_lung: bool
    arm_angle: float  # degrees from vertical, outward
    breast_mm: float
    bubble: tuple[float, float, float]  # centre x, half width, half height (width 0: none)
    fluid_level: bool
    heart_frac: float  # share of the heart width left of the midline
    heart_theta: float  # long-axis angle below horizontal, degrees
    heart_top: float
    heart_depth: float


def _plan(hab: Habitus, view: str, ctr: float, rng: np.random.Generator) -> _Plan:
    """Turn the patient's habitus and this study's view into concrete geometry."""
    ap = view == "AP"
    height = hab.lung_height_mm * float(rng.uniform(0.84, 0.94) if ap else rng.uniform(0.96, 1.03))
    hw = 0.5 * hab.thorax_width_mm
    raise_r = hab.right_dome_raise_mm
    dome = hab.dome_height_mm * (1.1 if ap else 1.0)
    knob_r = hab.aortic_knob_mm * (1.1 if ap else 1.0)
    hb = hw + 11.0 + hab.soft_tissue_mm
    if ap:
        clav = (0.07 * height + rng.normal(0, 4), 0.02 * height + rng.normal(0, 4))
    else:
        clav = (0.17 * height + rng.normal(0, 5), 0.02 * height + rng.normal(0, 5))
    has_bubble = rng.random() < 0.75
    bub_w = float(rng.uniform(12, 28)) if has_bubble else 0.0
    return _Plan(
        seed=hab.anatomy_seed,
        hw=hw,
        height=height,
        y_wide=0.8 * height,
        se_a=0.6 * hw,
        se_uc=0.4 * hw,
        shift=hab.mediastinal_shift_mm + float(rng.normal(0, 1.5)),
        cp_y=(height - 0.2 * raise_r, height),
        dome_h=(dome + 0.8 * raise_r, dome),
        dome_peak=0.45 * hw,
        lung_depth=0.78 * hab.chest_depth_mm,
        hb=hb,
        depth=hab.chest_depth_mm,
        neck_hw=0.5 * hab.neck_width_mm,
        shoulder_y=-hab.shoulder_height_mm,
        acromion_u=hb + 12.0,
        knob=(14.0 + 0.3 * knob_r, 0.26 * height, knob_r),
        carina_y=0.3 * height,
        rib_period=hab.rib_spacing_mm * height / hab.lung_height_mm,
        rib_droop=hab.rib_droop * (0.7 if ap else 1.0),
        clavicle=(float(clav[0]), float(clav[1])),
        scapula_over_lung=ap,
        arm_angle=float(rng.uniform(3, 9) if ap else rng.uniform(18, 32)),
        breast_mm=hab.breast_mm,
        bubble=(0.58 * hw + float(rng.normal(0, 8)), bub_w, bub_w * float(rng.uniform(0.5, 0.8))),
        fluid_level=not ap,
        heart_frac=float(np.clip(hab.heart_left_fraction + rng.normal(0, 0.015), 0.55, 0.75)),
        heart_theta=float(34.0 - 30.0 * (ctr - 0.45) + rng.normal(0, 3)),
        heart_top=(0.47 - 0.12 * (ctr - 0.45)) * height,
        heart_depth=0.78 * hab.chest_depth_mm * float(np.clip(0.6 + 0.6 * (ctr - 0.45), 0.5, 0.85)),
    )


# --------------------------------------------------------------------------------------------
# lungs, mediastinum, diaphragm


def _dome_y(p: _Plan, xs: Arr) -> Arr:
    """Diaphragm level per column: convex domes meeting the chest wall at sharp angles.

    The two hemidiaphragms are blended across the midline (under the heart) so the heart
    and the upper abdomen have no step there.
    """
    u = np.abs(xs)
    lat = np.clip((u - p.dome_peak) / (p.hw - p.dome_peak), 0, None)
    med = np.clip((p.dome_peak - u) / p.dome_peak, 0, None)
    rise = np.where(u >= p.dome_peak, 1.0 - lat**2.3, 1.0 - 0.45 * med * med)
    right = p.cp_y[0] - p.dome_h[0] * rise
    left = p.cp_y[1] - p.dome_h[1] * rise
    w = _smoothstep(xs, -25.0, 25.0)
    return _f32(right + (left - right) * w)


def _mediastinum(p: _Plan, ys: Arr) -> tuple[Arr, Arr]:
    """Half widths (right, left) of the air-free mediastinum from its centre line, per row."""
    t = ys / p.height
    right = 16.0 + 12.0 * _smoothstep(t, 0.05, 0.45) - 14.0 * _smoothstep(t, 0.5, 0.66)
    ku, ky, kr = p.knob
    knob = np.where(
        np.abs(ys - ky) < kr, ku + np.sqrt(np.clip(kr * kr - (ys - ky) ** 2, 0, None)), 0
    )
    aorta = np.where(ys > ky, ku + 0.6 * kr, 0.0)
    pulm = 20.0 + 14.0 * np.exp(-(((ys - ky - 2.2 * kr) / 13.0) ** 2))
    left = np.maximum.reduce([14.0 + 6.0 * _smoothstep(t, 0.0, 0.4), knob, aorta, pulm])
    return right, left


@dataclass(frozen=True)
class _LungFields:
    region: F32  # signed mm level of the lung region (retrocardiac lung included)
    air: F32  # aerated lung depth, mm, before the heart is subtracted
    dome: Arr  # diaphragm level per column


def _lung_fields(p: _Plan, xs: Arr, ys: Arr) -> _LungFields:
    """Lung region level and aerated depth: a sqrt (chord-like) profile from every border."""
    u = np.abs(xs)
    below = np.clip((ys - p.y_wide) / (p.height - p.y_wide), 0, 2.0)
    a = p.se_a * (1.0 - 0.06 * below * below)
    dy = np.clip(p.y_wide - ys, 0, None) / p.y_wide
    r = ((np.abs(u - p.se_uc) / a) ** 2.4 + dy**2.4) ** (1 / 2.4)
    wall = a * (1.0 - r)
    um = xs - p.shift
    m_right, m_left = _mediastinum(p, ys)
    medial = np.abs(um) - np.where(um >= 0, m_left, m_right)
    dome_y = _dome_y(p, xs)
    dome = dome_y - ys
    side = np.minimum(wall, medial)
    region = np.minimum(side, dome).astype(np.float32)
    t = ys / p.height
    lmax = p.lung_depth * (0.45 + 0.55 * _smoothstep(t, -0.02, 0.8))
    g_side = np.sqrt(np.clip(side / 35.0, 0, 1))
    g_dome = np.where(
        dome >= 0,
        0.15 + 0.85 * np.sqrt(np.clip(dome / 30.0, 0, 1)),
        0.15 * np.exp(np.minimum(dome, 0.0) / 15.0),
    )
    air = (lmax * g_side * g_dome).astype(np.float32)
    return _LungFields(region=region, air=air, dome=dome_y)


# --------------------------------------------------------------------------------------------
# heart


@dataclass(frozen=True)
class _HeartShape:
    lv: tuple[float, float, float, float, float]  # centre x, y, semi-axes a, b, angle (rad)
    ra: tuple[float, float, float, float]  # centre x, y, semi-axes a, b
    pivot: float


def _heart_shape(p: _Plan, width_mm: float) -> _HeartShape:
    """Left ventricle (tilted ellipse) plus right atrium, spanning ``width_mm`` left to right.

    The ventricle is fixed by its extents: from a little right of the midline to the apex,
    from the heart's upper border down past the left hemidiaphragm, which cuts it as the
    diaphragm does the real heart.  The atrium forms the gentler right heart border.
    """
    lft = min(p.heart_frac * width_mm, 0.9 * p.hw - p.shift)
    rgt = min(width_mm - lft, 0.85 * p.hw + p.shift)
    lft = width_mm - rgt
    th = math.radians(float(np.clip(p.heart_theta, 15.0, 40.0)))
    c2, s2 = math.cos(th) ** 2, math.sin(th) ** 2
    ext = 0.5 * (lft + 0.35 * width_mm)
    cx = p.shift + lft - ext
    floor = float(_dome_y(p, np.array([cx + 0.3 * ext]))[0])
    # a tilted ellipse can only have extents whose ratio lies between tan and cot of its tilt
    lo, hi = max(0.8, 1.05 * math.tan(th)), min(1.3, 0.95 / math.tan(th))
    ev = float(np.clip((floor - p.heart_top) / 1.6, lo * ext, hi * ext))
    a = math.sqrt((ext * ext * c2 - ev * ev * s2) / (c2 - s2))
    b = math.sqrt((ev * ev * c2 - ext * ext * s2) / (c2 - s2))
    cy = p.heart_top + ev
    ra_a = 0.2 * width_mm
    ra_x = p.shift - rgt + ra_a
    ra_floor = float(_dome_y(p, np.array([ra_x]))[0])
    ra_b = max(0.36 * (ra_floor - p.heart_top), 15.0)
    return _HeartShape(
        lv=(cx, cy, a, b, th), ra=(ra_x, ra_floor - 0.6 * ra_b, ra_a, ra_b), pivot=p.shift
    )


def _heart_fields(p: _Plan, shape: _HeartShape, scale: float, xs: Arr, ys: Arr) -> tuple[F32, F32]:
    """Heart level (mm, > 0 inside, resting on the diaphragm) and normalised chord (0..1)."""
    xh = shape.pivot + (xs - shape.pivot) / scale
    cx, cy, a, b, th = shape.lv
    dx, dy = xh - cx, ys - cy
    xr = (dx * math.cos(th) + dy * math.sin(th)) / a
    yr = (-dx * math.sin(th) + dy * math.cos(th)) / b
    r_lv = np.sqrt(xr * xr + yr * yr)
    rx, ry, ra, rb = shape.ra
    r_ra = np.sqrt(((xh - rx) / ra) ** 2 + ((ys - ry) / rb) ** 2)
    level = np.maximum((1.0 - r_lv) * math.sqrt(a * b), (1.0 - r_ra) * math.sqrt(ra * rb))
    level = np.minimum(level, _dome_y(p, xs) - ys)
    chord = np.sqrt(np.clip(1.0 - np.minimum(r_lv, r_ra) ** 2, 0, 1))
    chord = chord * _smoothstep(_dome_y(p, xs) - ys, -2.0, 2.0)
    return level.astype(np.float32), chord.astype(np.float32)


# --------------------------------------------------------------------------------------------
# body outline and soft tissue


def _body_thickness(p: _Plan, xs: Arr, ys: Arr) -> Arr:
    """Soft-tissue path length (mm): torso, shoulders, neck and arms."""
    u = np.abs(xs)
    t = ys / p.height
    span = max(p.acromion_u - p.neck_hw, 1.0)
    s = np.clip((u - p.neck_hw) / span, 0, 1)
    top = p.shoulder_y - 55.0 * (1.0 - s) ** 2
    top = np.where(u > p.acromion_u, p.shoulder_y + (u - p.acromion_u) ** 2 / 60.0, top)
    top_mask = _smoothstep(ys - top, -4.0, 4.0)
    flare = (p.acromion_u + 15.0 - p.hb) * (1.0 - _smoothstep(ys, p.shoulder_y, 0.3 * p.height))
    half = p.hb * (1.0 + 0.03 * np.clip(t, 0, 1.5)) + flare
    depth = p.depth * (0.62 + 0.38 * _smoothstep(t, -0.1, 0.55))
    torso = depth * np.sqrt(np.clip(1.0 - (u / half) ** 2, 0, 1)) * top_mask
    neck = 0.6 * p.depth * np.sqrt(np.clip(1.0 - (xs / p.neck_hw) ** 2, 0, 1))
    neck = neck * (ys < 0.2 * p.height)
    arms = _arm_axis_distance(p, xs, ys)
    arm = 0.9 * _cylinder_chord(arms, 42.0) * (ys > p.shoulder_y + 10.0)
    return np.maximum(np.maximum(torso, neck), arm)


def _arm_axis_distance(p: _Plan, xs: Arr, ys: Arr) -> Arr:
    """Distance to the humeral axis, which starts at the shoulder and runs down and outward."""
    ang = math.radians(p.arm_angle)
    ox, oy = p.acromion_u + 8.0, p.shoulder_y + 30.0
    du, dy = np.abs(xs) - ox, ys - oy
    along = du * math.sin(ang) + dy * math.cos(ang)
    across = du * math.cos(ang) - dy * math.sin(ang)
    return np.where(along > -20.0, np.abs(across), np.hypot(across, along + 20.0))


def _breasts(p: _Plan, xs: Arr, ys: Arr) -> Arr:
    """Breast shadows: density fading upward over the lower zones, sharper inferior fold.

    Fat (less dense than muscle) and compression against the detector make the effective
    soft-tissue path about a third of the breast's anatomical thickness.
    """
    if p.breast_mm <= 0:
        return np.zeros((ys.shape[0], xs.shape[1]), dtype=np.float32)
    u = np.abs(xs)
    cy = 0.84 * p.height
    ry = np.where(ys > cy, 0.2 * p.height, 0.45 * p.height)
    r2 = ((u - 0.66 * p.hw) / (0.5 * p.hw)) ** 2 + ((ys - cy) / ry) ** 2
    return 0.35 * p.breast_mm * np.sqrt(np.clip(1.0 - r2, 0, 1)) ** 1.5


# --------------------------------------------------------------------------------------------
# air: trachea, bronchi, stomach


def _hila(p: _Plan) -> tuple[tuple[float, float], tuple[float, float]]:
    """Hilum points (right, left): the left one higher, as in most people."""
    return (p.shift - 42.0, 0.42 * p.height), (p.shift + 40.0, 0.38 * p.height)


def _airway_air(p: _Plan, xs: Arr, ys: Arr) -> Arr:
    """Trachea and main bronchi as air cylinders (mm of air on the ray)."""
    top = (p.shift * 0.5, -400.0)
    carina = (p.shift - 2.0, p.carina_y)
    hr, hl = _hila(p)
    air = _cylinder_chord(_segment_distance(xs, ys, top, carina), 8.5)
    right_end = (hr[0] + 12.0, hr[1] - 8.0)
    left_end = (hl[0] - 10.0, hl[1] - 6.0)
    air = np.maximum(air, _cylinder_chord(_segment_distance(xs, ys, carina, right_end), 6.5))
    air = np.maximum(air, _cylinder_chord(_segment_distance(xs, ys, carina, left_end), 6.0))
    return air


def _stomach_air(p: _Plan, xs: Arr, ys: Arr, dome: Arr) -> Arr:
    """Gastric bubble under the left hemidiaphragm; flat air-fluid level on erect films."""
    bx, bw, bh = p.bubble
    if bw <= 0:
        return np.zeros((ys.shape[0], xs.shape[1]), dtype=np.float32)
    roof = float(_dome_y(p, np.array([bx]))[0]) + 6.0
    cy = roof + bh
    r2 = ((xs - bx) / bw) ** 2 + ((ys - cy) / bh) ** 2
    air = 0.9 * bw * np.sqrt(np.clip(1.0 - r2, 0, 1))
    # erect: gas rises above a flat fluid level; supine: gas spreads thin and anterior
    air = air * (ys < cy + 0.1 * bh) if p.fluid_level else 0.6 * air
    return air * (ys > dome)


# --------------------------------------------------------------------------------------------
# bones


def _spine(p: _Plan, xs: Arr, ys: Arr) -> Arr:
    """Vertebral bodies with end plates, pedicle rings, spinous and transverse processes."""
    t = ys / p.height
    half = 15.0 + 9.0 * _smoothstep(t, -0.4, 1.3)
    dx = xs - p.shift
    q = dx / half
    period = p.rib_period
    phase = np.mod((ys + 0.45 * period) / period, 1.0)
    vert = 0.55 + 0.45 * _smoothstep(phase, 0.0, 0.12) * (1.0 - _smoothstep(phase, 0.76, 0.86))
    plates = np.exp(-(((phase - 0.1) / 0.035) ** 2)) + np.exp(-(((phase - 0.76) / 0.035) ** 2))
    waist = 1.0 + 0.06 * np.cos(2.0 * math.pi * (phase - 0.43))
    body = _tube(np.clip(q * waist, -1, 1), 0.15, 0.6) * (vert + 0.3 * plates)
    ped_r = np.sqrt(((np.abs(dx) - 0.7 * half) / (0.22 * half)) ** 2 + ((phase - 0.3) / 0.17) ** 2)
    pedicle = np.exp(-(((ped_r - 1.0) / 0.3) ** 2))
    spin_r = np.sqrt((dx / (0.16 * half)) ** 2 + ((phase - 0.72) / 0.28) ** 2)
    spinous = np.sqrt(np.clip(1.0 - spin_r**2, 0, 1))
    tp_u = (np.abs(dx) - half) / 16.0
    transverse = np.exp(-(((phase - 0.32) / 0.1) ** 2)) * np.clip(1.0 - tp_u, 0, 1) * (tp_u > -0.3)
    return 0.11 * body + 0.07 * pedicle + 0.05 * spinous + 0.05 * transverse


def _posterior_ribs(p: _Plan, xs: Arr, ys: Arr) -> Arr:
    """Posterior ribs: one periodic family of bands, arching near the spine, sloping laterally.

    Each rib gets its own brightness, width and small offset (seeded per patient) so the cage
    does not look machine-made; band centres sit mid-period so the per-rib table never
    switches inside a rib.
    """
    u = np.abs(xs - p.shift)
    s = u / p.hw
    lat = np.clip((s - 0.25) / 0.75, 0, None)
    arch = 6.0 * np.exp(-(((s - 0.28) / 0.14) ** 2))
    drop = p.rib_period * p.rib_droop * (1.2 * lat**1.5 + 1.0 * lat**4) - arch
    slope = np.gradient(drop.ravel(), xs.ravel()).reshape(drop.shape)
    thick = 0.42 * np.clip(np.sqrt(1.0 + slope * slope), 1.0, 1.6)
    n = (ys - drop + 0.05 * p.height) / p.rib_period - 0.5
    k = np.floor(n)
    idx = np.clip(k, 0, 11).astype(np.intp)
    table = np.random.default_rng(p.seed + 2)
    amp = table.uniform(0.8, 1.15, 12) * np.r_[np.ones(10), 0.7, 0.0]
    offset = table.uniform(-0.05, 0.05, 12)
    width = table.uniform(0.9, 1.1, 12)
    q = (n - k - 0.5 - offset[idx]) / (0.5 * thick * width[idx])
    band = _tube(q, 0.18, 0.25) * (np.abs(q) < 1.0) * (k >= 0) * amp[idx]
    medial = _smoothstep(u, 24.0, 34.0)
    lateral = 1.0 - _smoothstep(u, p.hw + 8.0, p.hw + 14.0)
    return _f32(0.13 * band * medial * lateral * (0.75 + 0.25 * (1.0 - s.clip(0, 1))))


def _anterior_ribs(p: _Plan, xs: Arr, ys: Arr) -> Arr:
    """Anterior ribs: fainter bands sloping down toward the sternum, fading at the cartilage."""
    u = np.abs(xs)
    rise = 0.3 * p.height * np.clip(1.0 - u / p.hw, 0, 1) ** 1.2
    period = 1.45 * p.rib_period
    n = (ys - rise + 0.04 * p.height) / period
    frac = np.mod(n, 1.0)
    thick = 0.36
    q = (frac - 0.5 * thick) / (0.5 * thick)
    band = _tube(q, 0.3, 0.5) * (np.abs(q) < 1.0) * (n >= 0.0) * (n < 7.0)
    fade = _smoothstep(u, 45.0, 85.0) * (1.0 - _smoothstep(u, p.hw + 2.0, p.hw + 10.0))
    return 0.06 * band * fade


def _clavicles(p: _Plan, xs: Arr, ys: Arr) -> Arr:
    """S-shaped clavicles from the sternal notch to the acromion (flatter on AP films)."""
    u = np.abs(xs - 0.5 * p.shift)
    um, ul = 24.0, p.acromion_u - 8.0
    tau = (u - um) / (ul - um)
    y_med, y_lat = p.clavicle
    tau01 = np.clip(tau, 0, 1)
    centre = y_med + (y_lat - y_med) * tau01**1.5 + 4.0 * np.sin(2.0 * math.pi * tau01)
    half = 7.5 + 5.0 * np.clip(1.0 - tau, 0, 1) ** 3
    q = (ys - centre) / half
    # rounded sternal end: a disc cap instead of a square cut
    cap = np.hypot(u - um, ys - y_med) / (7.5 + 5.0)
    q = np.where(tau < 0, cap, q)
    ends = 1.0 - _smoothstep(tau, 0.95, 1.02)
    return 0.45 * _tube(np.clip(q, -1, 1), 0.25, 0.4) * (np.abs(q) < 1) * ends


def _scapulae(p: _Plan, xs: Arr, ys: Arr) -> Arr:
    """Scapular plates: projected over the upper lateral lungs on AP, rotated clear on PA."""
    u = np.abs(xs)
    h = p.height
    if p.scapula_over_lung:
        tri = ((p.hw - 55.0, 0.02 * h), (p.hw - 30.0, 0.58 * h), (p.acromion_u - 12.0, 0.08 * h))
    else:
        tri = ((p.hw + 2.0, 0.0), (p.hw + 22.0, 0.55 * h), (p.acromion_u + 10.0, 0.08 * h))
    level = np.full((ys.shape[0], xs.shape[1]), np.inf, dtype=np.float32)
    for i in range(3):
        (x0, y0), (x1, y1) = tri[i], tri[(i + 1) % 3]
        nx, ny = y1 - y0, -(x1 - x0)
        norm = math.hypot(nx, ny)
        (x2, y2) = tri[(i + 2) % 3]
        sign = 1.0 if (x2 - x0) * nx + (y2 - y0) * ny > 0 else -1.0
        level = np.minimum(level, sign * ((u - x0) * nx + (ys - y0) * ny) / norm)
    plate = _smoothstep(level, -1.0, 3.0)
    rim = np.exp(-((level / 2.5) ** 2))
    return _f32(0.07 * plate + 0.12 * rim)


def _humeri(p: _Plan, xs: Arr, ys: Arr) -> Arr:
    """Humeral heads and proximal shafts at the upper corners."""
    ang = math.radians(p.arm_angle)
    hx, hy = p.acromion_u - 4.0, p.shoulder_y + 32.0
    head = np.hypot(np.abs(xs) - hx, ys - hy) / 24.0
    out = 0.55 * _tube(np.clip(head, 0, 1.0), 0.15, 0.55) * (head < 1.0)
    du, dy = np.abs(xs) - hx, ys - hy
    along = du * math.sin(ang) + dy * math.cos(ang)
    # shaft flares toward the surgical neck and head
    half = 10.0 + 7.0 * np.exp(-np.clip(along, 0, None) / 30.0)
    across = (du * math.cos(ang) - dy * math.sin(ang)) / half
    shaft = 0.45 * _tube(np.clip(across, -1, 1), 0.3, 0.3) * (np.abs(across) < 1) * (along > 10)
    return np.maximum(out, shaft)


def _bones(p: _Plan, xs: Arr, ys: Arr) -> Arr:
    """Sum of bony attenuation; overlapping bones add as in projection.

    Ribs are dimmed below the diaphragm: in real films scatter from the abdomen hides them.
    """
    ribs = _posterior_ribs(p, xs, ys) + _anterior_ribs(p, xs, ys)
    ribs = ribs * (0.45 + 0.55 * _smoothstep(_dome_y(p, xs) - ys, -25.0, 5.0))
    total = _spine(p, xs, ys) * (0.6 + 0.4 * _smoothstep(_dome_y(p, xs) - ys, -40.0, 0.0)) + ribs
    total = total + _clavicles(p, xs, ys) + _scapulae(p, xs, ys) + _humeri(p, xs, ys)
    return _f32(total)


# --------------------------------------------------------------------------------------------
# pulmonary vessels and parenchymal texture


@dataclass(frozen=True)
class _Grid:
    """Body-aligned work grid: column j is x0 + j * step mm, row i is y0 + i * step mm."""

    x0: float
    y0: float
    step: float
    nx: int
    ny: int

    def axes(self) -> tuple[F32, F32]:
        xs = (self.x0 + self.step * np.arange(self.nx, dtype=np.float32))[None, :]
        ys = (self.y0 + self.step * np.arange(self.ny, dtype=np.float32))[:, None]
        return xs.astype(np.float32), ys.astype(np.float32)


def _vessel_segments(p: _Plan, rng: np.random.Generator) -> tuple[Arr, Arr, Arr, Arr]:
    """Bifurcating pulmonary arterial trees from both hila: (start, control, end, radius)."""
    starts, ctrls, ends, radii = [], [], [], []
    for (hx, hy), lat in zip(_hila(p), (-1.0, 1.0), strict=True):
        n = 9
        deg = np.linspace(-80.0, 110.0, n) + rng.normal(0, 7, n)
        ang = np.radians(deg)
        # trunks leave along the hilum (upper lobe arteries high, lower lobe low), not one point
        pos = np.stack([np.full(n, hx), hy + 0.25 * deg], axis=1) + rng.normal(0, 3, (n, 2))
        length = 0.12 * p.height * rng.uniform(0.8, 1.2, n)
        rad = 3.8 * rng.uniform(0.85, 1.15, n)
        for _ in range(7):
            d = np.stack([lat * np.cos(ang), np.sin(ang)], axis=1)
            end = pos + d * length[:, None]
            perp = np.stack([-d[:, 1], d[:, 0]], axis=1)
            ctrl = 0.5 * (pos + end) + perp * (length * rng.normal(0, 0.1, len(length)))[:, None]
            starts.append(pos)
            ctrls.append(ctrl)
            ends.append(end)
            radii.append(rad)
            m = len(ang)
            spread = rng.uniform(14, 32, 2 * m) * np.tile([-1.0, 1.0], m)
            ang = np.repeat(ang, 2) + np.radians(spread + rng.normal(0, 5, 2 * m))
            pos = np.repeat(end, 2, axis=0)
            length = np.repeat(length, 2) * rng.uniform(0.68, 0.86, 2 * m)
            rad = np.repeat(rad, 2) * rng.uniform(0.7, 0.8, 2 * m)
    return (
        np.concatenate(starts),
        np.concatenate(ctrls),
        np.concatenate(ends),
        np.concatenate(radii),
    )


def _vessels(p: _Plan, grid: _Grid) -> F32:
    """Rasterise the vessel trees as blurred lines, one blur width per calibre class."""
    rng = np.random.default_rng(p.seed)
    start, ctrl, end, rad = _vessel_segments(p, rng)
    length = np.linalg.norm(end - start, axis=1)
    npts = int(np.ceil(length.max() / (0.6 * grid.step))) + 1
    tau = np.linspace(0.0, 1.0, npts)[None, :, None]
    pts = (
        (1 - tau) ** 2 * start[:, None]
        + 2 * (1 - tau) * tau * ctrl[:, None]
        + tau**2 * end[:, None]
    )
    out = np.zeros((grid.ny, grid.nx), dtype=np.float32)
    for lo, hi, sigma_mm in ((2.6, np.inf, 2.2), (1.3, 2.6, 1.2), (0.0, 1.3, 0.65)):
        sel = (rad >= lo) & (rad < hi)
        if not sel.any():
            continue
        sigma = max(sigma_mm / grid.step, 0.5)
        peak = AIR_DEFICIT * 2.0 * rad[sel] * 1.3
        w = peak * (length[sel] / (npts - 1) / grid.step) * math.sqrt(2 * math.pi) * sigma
        cols = (pts[sel, :, 0] - grid.x0) / grid.step
        rows = (pts[sel, :, 1] - grid.y0) / grid.step
        weights = np.repeat(w[:, None], npts, axis=1)
        acc = _splat((grid.ny, grid.nx), rows.ravel(), cols.ravel(), weights.ravel())
        out += ndimage.gaussian_filter(acc, sigma, truncate=3.0)
    return out


def _hilar(p: _Plan, xs: Arr, ys: Arr) -> Arr:
    """Proximal pulmonary arteries: the hilar densities."""
    total = np.zeros((ys.shape[0], xs.shape[1]), dtype=np.float32)
    for hx, hy in _hila(p):
        total = total + _f32(0.12 * np.exp(-(((xs - hx) / 13.0) ** 2 + ((ys - hy) / 24.0) ** 2)))
    return total


def _texture(p: _Plan, grid: _Grid) -> F32:
    """Faint parenchymal mottling at two scales, fixed per patient."""
    rng = np.random.default_rng(p.seed + 1)
    fine = ndimage.gaussian_filter(
        rng.standard_normal((grid.ny, grid.nx), dtype=np.float32), 2.0 / grid.step
    )
    coarse = ndimage.gaussian_filter(
        rng.standard_normal((grid.ny, grid.nx), dtype=np.float32), 9.0 / grid.step
    )
    fine /= fine.std() + 1e-6
    coarse /= coarse.std() + 1e-6
    return _f32(0.008 * fine + 0.012 * coarse)


# --------------------------------------------------------------------------------------------
# the body-grid rendering


@dataclass(frozen=True)
class _BodyRender:
    attenuation: F32
    lung_air: F32


def _render_body(
    p: _Plan, grid: _Grid, lungs: _LungFields, heart: _HeartShape, heart_scale: float
) -> _BodyRender:
    """Attenuation on the body grid: soft tissue minus air, plus bone and vessels."""
    xs, ys = grid.axes()
    _, chord = _heart_fields(p, heart, heart_scale, xs, ys)
    air = np.maximum(lungs.air - p.heart_depth * chord, 0.12 * lungs.air)
    body = _body_thickness(p, xs, ys) + _breasts(p, xs, ys)
    air = np.minimum(air, 0.85 * body)
    visible = _smoothstep(air, 4.0, 60.0)
    vessels = (_vessels(p, grid) + _hilar(p, xs, ys)) * visible
    texture = _texture(p, grid) * _smoothstep(air, 0.0, 80.0)
    other_air = _airway_air(p, xs, ys) + _stomach_air(p, xs, ys, lungs.dome)
    atten = MU_SOFT * body - AIR_DEFICIT * air - MU_SOFT * np.minimum(other_air, 0.5 * body)
    atten = atten + (_bones(p, xs, ys) + vessels + texture) * (body > 1.0)
    return _BodyRender(
        attenuation=np.clip(atten, 0.0, None).astype(np.float32),
        lung_air=air.astype(np.float32),
    )


# --------------------------------------------------------------------------------------------
# placing the body on the detector


@dataclass(frozen=True)
class _Frame:
    """Affine map between detector pixels and body mm (scale, tilt, translation)."""

    scale: float  # image mm per body mm
    origin: tuple[float, float]  # image mm of the body origin
    cos_t: float
    sin_t: float
    spacing: float

    def to_body(self, px: Arr, py: Arr) -> tuple[Arr, Arr]:
        """Pixel (column, row) centres to body mm."""
        dx = (px + 0.5) * self.spacing - self.origin[0]
        dy = (py + 0.5) * self.spacing - self.origin[1]
        xb = (self.cos_t * dx + self.sin_t * dy) / self.scale
        yb = (-self.sin_t * dx + self.cos_t * dy) / self.scale
        return xb, yb

    def to_pixel(self, xb: Arr, yb: Arr) -> tuple[Arr, Arr]:
        """Body mm to fractional pixel (column, row) indices."""
        dx = self.scale * (self.cos_t * xb - self.sin_t * yb)
        dy = self.scale * (self.sin_t * xb + self.cos_t * yb)
        return (dx + self.origin[0]) / self.spacing - 0.5, (
            dy + self.origin[1]
        ) / self.spacing - 0.5


def _frame(geometry: Geometry, hab: Habitus, p: _Plan, rng: np.random.Generator) -> _Frame:
    """Shrink the body if the field is too small, centre it, and apply tilt and jitter."""
    fw, fh = geometry.field_mm
    need_w = 2.0 * (p.hw + 11.0 + 0.6 * hab.soft_tissue_mm)
    need_h = p.height + 110.0
    scale = min(1.0, 0.96 * fw / need_w, 0.96 * fh / need_h)
    spare = fh - scale * p.height
    top = float(np.clip(0.3 * spare + rng.normal(0, 0.03 * spare), 0.12 * spare, 0.45 * spare))
    ox = 0.5 * fw + float(rng.normal(0, 0.012 * fw))
    tilt = math.radians(hab.tilt_deg + float(rng.normal(0, 0.6)))
    return _Frame(scale, (ox, top), math.cos(tilt), math.sin(tilt), geometry.spacing_mm)


def _work_grid(geometry: Geometry, frame: _Frame) -> _Grid:
    """Body-aligned grid covering the preimage of the whole detector."""
    cols = np.array([-0.5, geometry.columns - 0.5, -0.5, geometry.columns - 0.5])
    rows = np.array([-0.5, -0.5, geometry.rows - 0.5, geometry.rows - 0.5])
    xb, yb = frame.to_body(cols, rows)
    pixels = float(np.clip(0.5 * max(geometry.rows, geometry.columns), *_WORK_PIXELS))
    step = max(np.ptp(xb), np.ptp(yb)) / pixels
    step = max(step, geometry.spacing_mm / frame.scale / 4.0)
    x0, y0 = float(xb.min() - 3 * step), float(yb.min() - 3 * step)
    nx = math.ceil(np.ptp(xb) / step) + 7
    ny = math.ceil(np.ptp(yb) / step) + 7
    return _Grid(x0, y0, float(step), nx, ny)


def _resample(
    field: F32,
    grid: _Grid,
    frame: _Frame,
    shape: tuple[int, int],
    origin: tuple[int, int] = (0, 0),
    smooth: bool = False,
) -> F32:
    """Sample a body-grid field at detector pixel centres (bilinear, optional anti-aliasing)."""
    k = frame.spacing / (frame.scale * grid.step)
    if smooth and k > 1.2:
        field = ndimage.gaussian_filter(field, 0.45 * math.sqrt(k * k - 1.0))
    c, s = frame.cos_t, frame.sin_t
    matrix = k * np.array([[c, -s], [s, c]])
    r0, c0 = origin
    xb, yb = frame.to_body(np.array([float(c0)]), np.array([float(r0)]))
    offset = ((float(yb[0]) - grid.y0) / grid.step, (float(xb[0]) - grid.x0) / grid.step)
    out = ndimage.affine_transform(
        field, matrix, offset=offset, output_shape=shape, order=1, mode="nearest", prefilter=False
    )
    return np.asarray(out, dtype=np.float32)


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
    p: _Plan, shape: _HeartShape, scale: float, grid: _Grid, frame: _Frame, out: tuple[int, int]
) -> Mask:
    """Full-resolution heart mask (only its bounding box is resampled)."""
    xs, ys = grid.axes()
    level, _ = _heart_fields(p, shape, scale, xs, ys)
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
    sub = _resample(level, grid, frame, (r1 - r0, c1 - c0), origin=(r0, c0))
    mask[r0:r1, c0:c1] = sub > 0
    return mask


def _fit_heart(
    p: _Plan, ctr: float, lung_region: Mask, grid: _Grid, frame: _Frame
) -> tuple[_HeartShape, float, Mask, Mask]:
    """Scale the heart until its measured width over the measured thorax equals ``ctr``.

    The target is the nearest whole pixel, so the rendered CTR is within 0.5 / thorax pixels
    of the request (under 0.01 for any thorax wider than 50 pixels).
    """
    out = (lung_region.shape[0], lung_region.shape[1])
    shape = _heart_shape(p, ctr * 2.0 * p.hw)
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
    plan = _plan(habitus, view, ctr, rng)
    frame = _frame(geometry, habitus, plan, rng)
    grid = _work_grid(geometry, frame)
    out = (geometry.rows, geometry.columns)
    xs, ys = grid.axes()
    fields = _lung_fields(plan, xs, ys)
    region = _resample(fields.region, grid, frame, out) > 0
    shape, scale, heart, lungs = _fit_heart(plan, ctr, region, grid, frame)
    body = _render_body(plan, grid, fields, shape, scale)
    atten = _resample(body.attenuation, grid, frame, out, smooth=True)
    air = _resample(body.lung_air, grid, frame, out, smooth=True)
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
