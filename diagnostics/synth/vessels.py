"""Pulmonary vessels (seeded bifurcating trees from both hila) and parenchymal texture.

Both are fixed per patient (seeded by the habitus's anatomy seed), so a patient's studies show
the same lungs.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from diagnostics.synth.phantom import AIR_DEFICIT, F32, Arr, f32, splat
from diagnostics.synth.plan import Plan
from diagnostics.synth.projection import Grid
from diagnostics.synth.thorax import hila

# --------------------------------------------------------------------------------------------
# pulmonary vessels and parenchymal texture


def _vessel_segments(p: Plan, rng: np.random.Generator) -> tuple[Arr, Arr, Arr, Arr]:
    """Bifurcating pulmonary arterial trees from both hila: (start, control, end, radius)."""
    starts, ctrls, ends, radii = [], [], [], []
    for (hx, hy), lat in zip(hila(p), (-1.0, 1.0), strict=True):
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


def vessel_trees(p: Plan, grid: Grid) -> F32:
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
        acc = splat((grid.ny, grid.nx), rows.ravel(), cols.ravel(), weights.ravel())
        out += ndimage.gaussian_filter(acc, sigma, truncate=3.0)
    return out


def hilar(p: Plan, xs: Arr, ys: Arr) -> Arr:
    """Proximal pulmonary arteries: the hilar densities."""
    total = np.zeros((ys.shape[0], xs.shape[1]), dtype=np.float32)
    for hx, hy in hila(p):
        total = total + f32(0.12 * np.exp(-(((xs - hx) / 13.0) ** 2 + ((ys - hy) / 24.0) ** 2)))
    return total


def lung_texture(p: Plan, grid: Grid) -> F32:
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
    return f32(0.008 * fine + 0.012 * coarse)
