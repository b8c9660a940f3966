"""Soft parts of the chest: lungs, mediastinum and diaphragm, the heart, body outline, air.

Each is a field on the body work grid (millimetres): signed levels (> 0 inside) for the regions
whose borders become masks, path lengths for what attenuates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from diagnostics.synth.phantom import F32, Arr, cylinder_chord, f32, segment_distance, smoothstep
from diagnostics.synth.plan import Plan

# --------------------------------------------------------------------------------------------
# lungs, mediastinum, diaphragm


def dome_level(p: Plan, xs: Arr) -> Arr:
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
    w = smoothstep(xs, -25.0, 25.0)
    return f32(right + (left - right) * w)


def _mediastinum(p: Plan, ys: Arr) -> tuple[Arr, Arr]:
    """Half widths (right, left) of the air-free mediastinum from its centre line, per row."""
    t = ys / p.height
    right = 16.0 + 12.0 * smoothstep(t, 0.05, 0.45) - 14.0 * smoothstep(t, 0.5, 0.66)
    ku, ky, kr = p.knob
    knob = np.where(
        np.abs(ys - ky) < kr, ku + np.sqrt(np.clip(kr * kr - (ys - ky) ** 2, 0, None)), 0
    )
    aorta = np.where(ys > ky, ku + 0.6 * kr, 0.0)
    pulm = 20.0 + 14.0 * np.exp(-(((ys - ky - 2.2 * kr) / 13.0) ** 2))
    left = np.maximum.reduce([14.0 + 6.0 * smoothstep(t, 0.0, 0.4), knob, aorta, pulm])
    return right, left


@dataclass(frozen=True)
class LungFields:
    region: F32  # signed mm level of the lung region (retrocardiac lung included)
    air: F32  # aerated lung depth, mm, before the heart is subtracted
    dome: Arr  # diaphragm level per column


def lung_fields(p: Plan, xs: Arr, ys: Arr) -> LungFields:
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
    dome_y = dome_level(p, xs)
    dome = dome_y - ys
    side = np.minimum(wall, medial)
    region = np.minimum(side, dome).astype(np.float32)
    t = ys / p.height
    lmax = p.lung_depth * (0.45 + 0.55 * smoothstep(t, -0.02, 0.8))
    g_side = np.sqrt(np.clip(side / 35.0, 0, 1))
    g_dome = np.where(
        dome >= 0,
        0.15 + 0.85 * np.sqrt(np.clip(dome / 30.0, 0, 1)),
        0.15 * np.exp(np.minimum(dome, 0.0) / 15.0),
    )
    air = (lmax * g_side * g_dome).astype(np.float32)
    return LungFields(region=region, air=air, dome=dome_y)


# --------------------------------------------------------------------------------------------
# heart


@dataclass(frozen=True)
class HeartShape:
    lv: tuple[float, float, float, float, float]  # centre x, y, semi-axes a, b, angle (rad)
    ra: tuple[float, float, float, float]  # centre x, y, semi-axes a, b
    pivot: float


def heart_shape(p: Plan, width_mm: float) -> HeartShape:
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
    floor = float(dome_level(p, np.array([cx + 0.3 * ext]))[0])
    # a tilted ellipse can only have extents whose ratio lies between tan and cot of its tilt
    lo, hi = max(0.8, 1.05 * math.tan(th)), min(1.3, 0.95 / math.tan(th))
    ev = float(np.clip((floor - p.heart_top) / 1.6, lo * ext, hi * ext))
    a = math.sqrt((ext * ext * c2 - ev * ev * s2) / (c2 - s2))
    b = math.sqrt((ev * ev * c2 - ext * ext * s2) / (c2 - s2))
    cy = p.heart_top + ev
    ra_a = 0.2 * width_mm
    ra_x = p.shift - rgt + ra_a
    ra_floor = float(dome_level(p, np.array([ra_x]))[0])
    ra_b = max(0.36 * (ra_floor - p.heart_top), 15.0)
    return HeartShape(
        lv=(cx, cy, a, b, th), ra=(ra_x, ra_floor - 0.6 * ra_b, ra_a, ra_b), pivot=p.shift
    )


def heart_fields(p: Plan, shape: HeartShape, scale: float, xs: Arr, ys: Arr) -> tuple[F32, F32]:
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
    level = np.minimum(level, dome_level(p, xs) - ys)
    chord = np.sqrt(np.clip(1.0 - np.minimum(r_lv, r_ra) ** 2, 0, 1))
    chord = chord * smoothstep(dome_level(p, xs) - ys, -2.0, 2.0)
    return level.astype(np.float32), chord.astype(np.float32)


# --------------------------------------------------------------------------------------------
# body outline and soft tissue


def body_thickness(p: Plan, xs: Arr, ys: Arr) -> Arr:
    """Soft-tissue path length (mm): torso, shoulders, neck and arms."""
    u = np.abs(xs)
    t = ys / p.height
    span = max(p.acromion_u - p.neck_hw, 1.0)
    s = np.clip((u - p.neck_hw) / span, 0, 1)
    top = p.shoulder_y - 55.0 * (1.0 - s) ** 2
    top = np.where(u > p.acromion_u, p.shoulder_y + (u - p.acromion_u) ** 2 / 60.0, top)
    top_mask = smoothstep(ys - top, -4.0, 4.0)
    flare = (p.acromion_u + 15.0 - p.hb) * (1.0 - smoothstep(ys, p.shoulder_y, 0.3 * p.height))
    half = p.hb * (1.0 + 0.03 * np.clip(t, 0, 1.5)) + flare
    depth = p.depth * (0.62 + 0.38 * smoothstep(t, -0.1, 0.55))
    torso = depth * np.sqrt(np.clip(1.0 - (u / half) ** 2, 0, 1)) * top_mask
    neck = 0.6 * p.depth * np.sqrt(np.clip(1.0 - (xs / p.neck_hw) ** 2, 0, 1))
    neck = neck * (ys < 0.2 * p.height)
    arms = _arm_axis_distance(p, xs, ys)
    arm = 0.9 * cylinder_chord(arms, 42.0) * (ys > p.shoulder_y + 10.0)
    return np.maximum(np.maximum(torso, neck), arm)


def _arm_axis_distance(p: Plan, xs: Arr, ys: Arr) -> Arr:
    """Distance to the humeral axis, which starts at the shoulder and runs down and outward."""
    ang = math.radians(p.arm_angle)
    ox, oy = p.acromion_u + 8.0, p.shoulder_y + 30.0
    du, dy = np.abs(xs) - ox, ys - oy
    along = du * math.sin(ang) + dy * math.cos(ang)
    across = du * math.cos(ang) - dy * math.sin(ang)
    return np.where(along > -20.0, np.abs(across), np.hypot(across, along + 20.0))


def breasts(p: Plan, xs: Arr, ys: Arr) -> Arr:
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


def hila(p: Plan) -> tuple[tuple[float, float], tuple[float, float]]:
    """Hilum points (right, left): the left one higher, as in most people."""
    return (p.shift - 42.0, 0.42 * p.height), (p.shift + 40.0, 0.38 * p.height)


def airway_air(p: Plan, xs: Arr, ys: Arr) -> Arr:
    """Trachea and main bronchi as air cylinders (mm of air on the ray)."""
    top = (p.shift * 0.5, -400.0)
    carina = (p.shift - 2.0, p.carina_y)
    hr, hl = hila(p)
    air = cylinder_chord(segment_distance(xs, ys, top, carina), 8.5)
    right_end = (hr[0] + 12.0, hr[1] - 8.0)
    left_end = (hl[0] - 10.0, hl[1] - 6.0)
    air = np.maximum(air, cylinder_chord(segment_distance(xs, ys, carina, right_end), 6.5))
    air = np.maximum(air, cylinder_chord(segment_distance(xs, ys, carina, left_end), 6.0))
    return air


def stomach_air(p: Plan, xs: Arr, ys: Arr, dome: Arr) -> Arr:
    """Gastric bubble under the left hemidiaphragm; flat air-fluid level on erect films."""
    bx, bw, bh = p.bubble
    if bw <= 0:
        return np.zeros((ys.shape[0], xs.shape[1]), dtype=np.float32)
    roof = float(dome_level(p, np.array([bx]))[0]) + 6.0
    cy = roof + bh
    r2 = ((xs - bx) / bw) ** 2 + ((ys - cy) / bh) ** 2
    air = 0.9 * bw * np.sqrt(np.clip(1.0 - r2, 0, 1))
    # erect: gas rises above a flat fluid level; supine: gas spreads thin and anterior
    air = air * (ys < cy + 0.1 * bh) if p.fluid_level else 0.6 * air
    return air * (ys > dome)
