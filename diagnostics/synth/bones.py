"""Bones: spine, posterior and anterior ribs, clavicles, scapulae and humeri.

Bony attenuation on the body work grid; overlapping bones add as in projection.
"""

from __future__ import annotations

import math

import numpy as np

from diagnostics.synth.phantom import Arr, f32, smoothstep, tube
from diagnostics.synth.plan import Plan
from diagnostics.synth.thorax import dome_level

# --------------------------------------------------------------------------------------------
# bones


def _spine(p: Plan, xs: Arr, ys: Arr) -> Arr:
    """Vertebral bodies with end plates, pedicle rings, spinous and transverse processes."""
    t = ys / p.height
    half = 15.0 + 9.0 * smoothstep(t, -0.4, 1.3)
    dx = xs - p.shift
    q = dx / half
    period = p.rib_period
    phase = np.mod((ys + 0.45 * period) / period, 1.0)
    vert = 0.55 + 0.45 * smoothstep(phase, 0.0, 0.12) * (1.0 - smoothstep(phase, 0.76, 0.86))
    plates = np.exp(-(((phase - 0.1) / 0.035) ** 2)) + np.exp(-(((phase - 0.76) / 0.035) ** 2))
    waist = 1.0 + 0.06 * np.cos(2.0 * math.pi * (phase - 0.43))
    body = tube(np.clip(q * waist, -1, 1), 0.15, 0.6) * (vert + 0.3 * plates)
    ped_r = np.sqrt(((np.abs(dx) - 0.7 * half) / (0.22 * half)) ** 2 + ((phase - 0.3) / 0.17) ** 2)
    pedicle = np.exp(-(((ped_r - 1.0) / 0.3) ** 2))
    spin_r = np.sqrt((dx / (0.16 * half)) ** 2 + ((phase - 0.72) / 0.28) ** 2)
    spinous = np.sqrt(np.clip(1.0 - spin_r**2, 0, 1))
    tp_u = (np.abs(dx) - half) / 16.0
    transverse = np.exp(-(((phase - 0.32) / 0.1) ** 2)) * np.clip(1.0 - tp_u, 0, 1) * (tp_u > -0.3)
    return 0.11 * body + 0.07 * pedicle + 0.05 * spinous + 0.05 * transverse


def _posterior_ribs(p: Plan, xs: Arr, ys: Arr) -> Arr:
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
    band = tube(q, 0.18, 0.25) * (np.abs(q) < 1.0) * (k >= 0) * amp[idx]
    medial = smoothstep(u, 24.0, 34.0)
    lateral = 1.0 - smoothstep(u, p.hw + 8.0, p.hw + 14.0)
    return f32(0.13 * band * medial * lateral * (0.75 + 0.25 * (1.0 - s.clip(0, 1))))


def _anterior_ribs(p: Plan, xs: Arr, ys: Arr) -> Arr:
    """Anterior ribs: fainter bands sloping down toward the sternum, fading at the cartilage."""
    u = np.abs(xs)
    rise = 0.3 * p.height * np.clip(1.0 - u / p.hw, 0, 1) ** 1.2
    period = 1.45 * p.rib_period
    n = (ys - rise + 0.04 * p.height) / period
    frac = np.mod(n, 1.0)
    thick = 0.36
    q = (frac - 0.5 * thick) / (0.5 * thick)
    band = tube(q, 0.3, 0.5) * (np.abs(q) < 1.0) * (n >= 0.0) * (n < 7.0)
    fade = smoothstep(u, 45.0, 85.0) * (1.0 - smoothstep(u, p.hw + 2.0, p.hw + 10.0))
    return 0.06 * band * fade


def _clavicles(p: Plan, xs: Arr, ys: Arr) -> Arr:
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
    ends = 1.0 - smoothstep(tau, 0.95, 1.02)
    return 0.45 * tube(np.clip(q, -1, 1), 0.25, 0.4) * (np.abs(q) < 1) * ends


def _scapulae(p: Plan, xs: Arr, ys: Arr) -> Arr:
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
    plate = smoothstep(level, -1.0, 3.0)
    rim = np.exp(-((level / 2.5) ** 2))
    return f32(0.07 * plate + 0.12 * rim)


def _humeri(p: Plan, xs: Arr, ys: Arr) -> Arr:
    """Humeral heads and proximal shafts at the upper corners."""
    ang = math.radians(p.arm_angle)
    hx, hy = p.acromion_u - 4.0, p.shoulder_y + 32.0
    head = np.hypot(np.abs(xs) - hx, ys - hy) / 24.0
    out = 0.55 * tube(np.clip(head, 0, 1.0), 0.15, 0.55) * (head < 1.0)
    du, dy = np.abs(xs) - hx, ys - hy
    along = du * math.sin(ang) + dy * math.cos(ang)
    # shaft flares toward the surgical neck and head
    half = 10.0 + 7.0 * np.exp(-np.clip(along, 0, None) / 30.0)
    across = (du * math.cos(ang) - dy * math.sin(ang)) / half
    shaft = 0.45 * tube(np.clip(across, -1, 1), 0.3, 0.3) * (np.abs(across) < 1) * (along > 10)
    return np.maximum(out, shaft)


def bones(p: Plan, xs: Arr, ys: Arr) -> Arr:
    """Sum of bony attenuation; overlapping bones add as in projection.

    Ribs are dimmed below the diaphragm: in real films scatter from the abdomen hides them.
    """
    ribs = _posterior_ribs(p, xs, ys) + _anterior_ribs(p, xs, ys)
    ribs = ribs * (0.45 + 0.55 * smoothstep(dome_level(p, xs) - ys, -25.0, 5.0))
    total = _spine(p, xs, ys) * (0.6 + 0.4 * smoothstep(dome_level(p, xs) - ys, -40.0, 0.0)) + ribs
    total = total + _clavicles(p, xs, ys) + _scapulae(p, xs, ys) + _humeri(p, xs, ys)
    return f32(total)
