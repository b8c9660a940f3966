"""Findings with exact ground truth, drawn into a ChestPhantom's attenuation in place.

Cardiomegaly is not here: it is the heart size chosen at rendering (``render_chest(ctr=...)``).

Units.  Sizes are patient (body) millimetres; on the detector they span
``mm * phantom.body_scale / spacing_mm`` pixels (body_scale is 1.0 unless the body was shrunk to
fit the field).  Opacity is added as line-integral attenuation, the unit of
``ChestPhantom.attenuation``: +0.1 means 10 % fewer photons through that point.

Nodule contrast scale.  A solid water-density sphere of diameter d replacing aerated lung adds
about ``AIR_DEFICIT * d`` = 0.015 per mm at its centre, but the phantom's clutter (ribs, vessels,
lung-depth gradient, vendor edge enhancement) is stronger at nodule scales than the physics of
a sphere can beat: at that scale every nodule under 10 mm was invisible.  Contrast is therefore a
visibility scale set against the phantom's own clutter, not a physical density:
``contrast = 2 * density * AIR_DEFICIT * (12 + 0.8 * d)`` with density log-uniform in 0.5..1.5,
its floor ramping from 0.5 at <= 8 mm to 0.8 at >= 12 mm so no large nodule is as faint as a
small one.  Contrasts span ~0.22 (faint 3 mm) to ~1.6 (dense 30 mm mass).  Measured on 60 paired
renders (with and without the nodule, 512 px at 0.8 mm, resampled to 320 px), the nodule's peak
over the standard deviation of the lung's band-pass clutter at its own scale is, as a median,
about 2.2 at 3.5 mm, 1.7 at 8 mm and 2.2 at 16 mm, from about 1.1 for the faintest: subtle but
findable.  At the earlier scale (gain 1 below 8 mm, offset 6) the median was 0.5-0.9 under
10 mm and a trained model scored those nodules at chance (AUROC 0.50-0.63).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from diagnostics.synth.anatomy import AIR_DEFICIT, ChestPhantom

Arr = npt.NDArray[Any]
Mask = npt.NDArray[np.bool_]

NODULE_DIAMETER_RANGE_MM = (3.0, 30.0)
EARLY_STAGE_MM = 10.0
EARLY_STAGE_FRACTION = 0.4
DENSITY_RANGE = (0.5, 1.5)
VISIBILITY_GAIN = 2.0
"""How far above solid-sphere physics nodules are drawn, to stand out of the phantom's clutter."""
EXTENTS = ("segmental", "lobar")
ZONES = ("upper", "middle", "lower")
_DEFAULT_LUNG_AIR_MM = 120.0  # used when a phantom carries no aerated-depth map


@dataclass(frozen=True)
class NoduleTruth:
    """Where the nodule is and how conspicuous: enough to score detection and size."""

    diameter_mm: float  # patient mm
    centre_px: tuple[float, float]  # (x=column, y=row), fractional pixels
    contrast: float  # peak added attenuation at the centre (see module docstring)


@dataclass(frozen=True)
class ConsolidationTruth:
    """Box and size of an airspace opacity; lung and zone say where it was confined."""

    bbox_px: tuple[int, int, int, int]  # (x0, y0, x1, y1), half-open; covers all added opacity
    extent: str  # "segmental" or "lobar"
    area_fraction: float  # share of the lung mask inside the opacity's 50 % contour
    lung: str = ""  # "right" or "left" (patient side; the right lung is on the image left)
    zone: str = ""  # "upper", "middle" or "lower" third of that lung


def sample_nodule_diameter_mm(rng: np.random.Generator) -> float:
    """Diameter in 3..30 mm: 40 % uniform in 3..10 (early stage), 60 % log-uniform in 10..30."""
    lo, hi = NODULE_DIAMETER_RANGE_MM
    if rng.random() < EARLY_STAGE_FRACTION:
        return float(rng.uniform(lo, EARLY_STAGE_MM))
    return float(math.exp(rng.uniform(math.log(EARLY_STAGE_MM), math.log(hi))))


def _size_ramp(diameter_mm: float) -> float:
    """0 at <= 8 mm, 1 at >= 12 mm: where the faintest density a nodule may have rises."""
    return min(max((diameter_mm - 8.0) / 4.0, 0.0), 1.0)


def nodule_contrast(diameter_mm: float, density: float) -> float:
    """Peak added attenuation of a nodule (see the module docstring for the scale).

    `density` is the draw in DENSITY_RANGE; for larger nodules its floor is raised (the same
    draw mapped onto a narrower range), so no large nodule is as faint as a small one.
    """
    low, high = DENSITY_RANGE
    floor = low + 0.3 * _size_ramp(diameter_mm)
    density = floor + (density - low) * (high - floor) / (high - low)
    return float(VISIBILITY_GAIN * density * AIR_DEFICIT * (12.0 + 0.8 * diameter_mm))


def _body_mm_per_px(phantom: ChestPhantom) -> float:
    return phantom.geometry.spacing_mm / phantom.body_scale


def _check_phantom(phantom: ChestPhantom) -> None:
    shape = (phantom.geometry.rows, phantom.geometry.columns)
    if phantom.attenuation.shape != shape or phantom.lung_mask.shape != shape:
        raise ValueError("phantom arrays do not match its geometry")
    if not phantom.lung_mask.any():
        raise ValueError("phantom has an empty lung mask")


# --------------------------------------------------------------------------------------------
# nodules


def _fits(lung: Mask, cy: float, cx: float, radius: float) -> bool:
    """True when the whole disc (with a one-pixel guard band) lies inside the lung mask."""
    r = radius + 1.0
    y0, y1 = math.floor(cy - r), math.ceil(cy + r) + 1
    x0, x1 = math.floor(cx - r), math.ceil(cx + r) + 1
    if y0 < 0 or x0 < 0 or y1 > lung.shape[0] or x1 > lung.shape[1]:
        return False
    yy, xx = np.ogrid[y0:y1, x0:x1]
    disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
    return bool(lung[y0:y1, x0:x1][disc].all())


def _place(lung: Mask, radius: float, rng: np.random.Generator) -> tuple[float, float]:
    """Random centre (row, col) whose disc is inside one lung field (hence off the heart)."""
    candidates = np.flatnonzero(lung)
    for _ in range(400):
        idx = int(candidates[rng.integers(candidates.size)])
        cy = idx // lung.shape[1] + float(rng.uniform(-0.5, 0.5))
        cx = idx % lung.shape[1] + float(rng.uniform(-0.5, 0.5))
        if _fits(lung, cy, cx, radius):
            return cy, cx
    # rare: large nodule, small lungs; pick among the deepest interior points instead
    depth = ndimage.distance_transform_edt(lung)
    deep = np.flatnonzero(depth.ravel() >= radius + 2.0)
    if deep.size == 0:
        raise ValueError("nodule is too large for the lung fields of this phantom")
    idx = int(deep[rng.integers(deep.size)])
    return float(idx // lung.shape[1]), float(idx % lung.shape[1])


def _sphere_patch(radius: float, cy: float, cx: float) -> tuple[Arr, int, int]:
    """Chord-length profile sqrt(1 - r^2) of a sphere, area-averaged over each pixel."""
    half = math.ceil(radius) + 1
    y0, x0 = math.floor(cy) - half, math.floor(cx) - half
    n = 2 * half + 2
    sub = int(np.clip(math.ceil(8.0 / max(radius, 0.5)), 2, 8))
    offs = (np.arange(n * sub) + 0.5) / sub
    yy = (y0 + offs)[:, None] - 0.5 - cy
    xx = (x0 + offs)[None, :] - 0.5 - cx
    prof = np.sqrt(np.clip(1.0 - (yy * yy + xx * xx) / (radius * radius), 0.0, None))
    return prof.reshape(n, sub, n, sub).mean(axis=(1, 3)), y0, x0


def add_nodule(phantom: ChestPhantom, diameter_mm: float, rng: np.random.Generator) -> NoduleTruth:
    """Add a projected solid sphere fully inside a lung field (ribs may overlap; heart never).

    Density (hence contrast) is random: log-uniform factor in ``DENSITY_RANGE``.
    """
    lo, hi = NODULE_DIAMETER_RANGE_MM
    if not (math.isfinite(diameter_mm) and lo <= diameter_mm <= hi):
        raise ValueError(
            f"diameter_mm must be within {NODULE_DIAMETER_RANGE_MM}, got {diameter_mm}"
        )
    _check_phantom(phantom)
    radius = 0.5 * diameter_mm / _body_mm_per_px(phantom)
    cy, cx = _place(phantom.lung_mask, radius, rng)
    density = math.exp(rng.uniform(math.log(DENSITY_RANGE[0]), math.log(DENSITY_RANGE[1])))
    contrast = nodule_contrast(diameter_mm, density)
    patch, y0, x0 = _sphere_patch(radius, cy, cx)
    rows, cols = phantom.attenuation.shape
    ys, xs = (
        slice(max(y0, 0), min(y0 + patch.shape[0], rows)),
        slice(max(x0, 0), min(x0 + patch.shape[1], cols)),
    )
    clipped = patch[ys.start - y0 : ys.stop - y0, xs.start - x0 : xs.stop - x0]
    phantom.attenuation[ys, xs] += (contrast * clipped).astype(np.float32)
    return NoduleTruth(diameter_mm=float(diameter_mm), centre_px=(cx, cy), contrast=contrast)


# --------------------------------------------------------------------------------------------
# consolidation


def _split_lungs(lung: Mask) -> tuple[Mask, Mask]:
    """(right, left) lung masks: split at the thinnest lung column near the image middle."""
    cols = np.flatnonzero(lung.any(axis=0))
    c0, c1 = int(cols[0]), int(cols[-1]) + 1
    counts = lung.sum(axis=0)
    a, b = c0 + int(0.3 * (c1 - c0)), c0 + int(0.7 * (c1 - c0))
    mid = a + int(np.argmin(counts[a:b])) if b > a else (c0 + c1) // 2
    right, left = lung.copy(), lung.copy()
    right[:, mid:] = False
    left[:, :mid] = False
    return right, left


def _zone_mask(side: Mask, zone: int) -> tuple[Mask, tuple[int, int]]:
    """One vertical third of a lung, and that third's row range."""
    rows = np.flatnonzero(side.any(axis=1))
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    r0 = top + (bottom - top) * zone // 3
    r1 = top + (bottom - top) * (zone + 1) // 3
    out = np.zeros_like(side)
    out[r0:r1] = side[r0:r1]
    return out, (r0, r1)


def _bbox(mask: Mask) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _downsample(mask: Mask, factor: int) -> Arr:
    """Block mean of a mask (padded to a multiple of ``factor``)."""
    r = -(-mask.shape[0] // factor) * factor
    c = -(-mask.shape[1] // factor) * factor
    padded = np.zeros((r, c), dtype=np.float32)
    padded[: mask.shape[0], : mask.shape[1]] = mask
    return np.asarray(padded.reshape(r // factor, factor, c // factor, factor).mean(axis=(1, 3)))


def _upsample(low: Arr, factor: int, shape: tuple[int, int]) -> Arr:
    """Bilinear upsampling of a block-averaged field back to ``shape`` (pixel-centre aligned)."""
    zoomed = ndimage.zoom(low, factor, order=1, mode="nearest", grid_mode=True)
    return np.asarray(zoomed[: shape[0], : shape[1]], dtype=np.float32)


@dataclass(frozen=True)
class _Canvas:
    """Low-resolution working window over one lung zone."""

    r0: int
    c0: int
    factor: int
    mm: float  # body mm per low-resolution pixel
    zone: Arr  # zone coverage (0..1) per low-resolution pixel


def _union_of_blobs(canvas: _Canvas, lobar: bool, rng: np.random.Generator) -> Arr:
    """Union of random discs inside the zone, grown until it covers the target share."""
    inside = np.argwhere(canvas.zone > 0.5)
    target = rng.uniform(0.55, 0.9) if lobar else rng.uniform(0.15, 0.45)
    rad_mm = (20.0, 42.0) if lobar else (9.0, 22.0)
    yy, xx = np.indices(canvas.zone.shape)
    union = np.zeros(canvas.zone.shape, dtype=bool)
    zone_px = max(float((canvas.zone > 0.5).sum()), 1.0)
    for _ in range(40):
        cy, cx = inside[rng.integers(len(inside))]
        radius = rng.uniform(*rad_mm) / canvas.mm
        union |= (yy - cy) ** 2 + ((xx - cx) * rng.uniform(0.8, 1.25)) ** 2 <= radius * radius
        if (union & (canvas.zone > 0.5)).sum() / zone_px >= target:
            break
    return union.astype(np.float32)


def _patchiness(shape: tuple[int, int], mm: float, floor: float, rng: np.random.Generator) -> Arr:
    """Smooth random modulation in [floor, 1]: acinar filling is never uniform."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape).astype(np.float32), 5.0 / mm)
    noise = (noise - noise.min()) / max(float(np.ptp(noise)), 1e-6)
    return np.asarray(floor + (1.0 - floor) * noise, dtype=np.float32)


def _bronchograms(
    canvas: _Canvas, opacity: Arr, toward_hilum: int, rng: np.random.Generator
) -> Arr:
    """Branching air-filled bronchi (0..1) running through the densest part of the opacity."""
    shape = opacity.shape
    dense = np.argwhere(opacity > 0.6)
    if len(dense) == 0:
        return np.zeros(shape, dtype=np.float32)
    # start at the hilar (medial) edge of the opacity and branch away from the hilum
    order = np.argsort(dense[:, 1] * -toward_hilum)
    starts = dense[order[: max(1, len(order) // 10)]]
    pts: list[Arr] = []
    widths: list[Arr] = []
    for _ in range(int(rng.integers(2, 5))):
        pos = starts[rng.integers(len(starts))].astype(np.float64)
        ang = math.radians(rng.uniform(-50, 50)) + (0.0 if toward_hilum < 0 else math.pi)
        length, width = rng.uniform(12.0, 25.0) / canvas.mm, 1.0
        for _gen in range(3):
            tau = np.linspace(0.0, 1.0, max(int(length * 2), 2))
            bend = ang + math.radians(rng.uniform(-12, 12)) * tau
            step = length / len(tau)
            path = pos + np.cumsum(step * np.stack([np.sin(bend), np.cos(bend)], axis=1), axis=0)
            pts.append(path)
            widths.append(width * (1.0 - 0.3 * tau))
            pos, ang = path[-1], float(bend[-1]) + math.radians(rng.uniform(-30, 30))
            length, width = 0.75 * length, 0.7 * width
    line, w = np.concatenate(pts), np.concatenate(widths)
    r = np.clip(np.rint(line[:, 0]).astype(int), 0, shape[0] - 1)
    c = np.clip(np.rint(line[:, 1]).astype(int), 0, shape[1] - 1)
    grid = np.zeros(shape, dtype=np.float32)
    np.maximum.at(grid, (r, c), w.astype(np.float32))
    tube = ndimage.gaussian_filter(grid, max(2.2 / canvas.mm, 0.8))
    return np.asarray(np.clip(tube / max(float(tube.max()), 1e-6), 0.0, 1.0), dtype=np.float32)


def _zone_taper(canvas: _Canvas, rows: tuple[int, int], lung_rows: tuple[int, int]) -> Arr:
    """Fade toward zone borders that are inside the lung, so the patch has no ruler edges."""
    n = canvas.zone.shape[0]
    r = canvas.r0 + (np.arange(n) + 0.5) * canvas.factor
    span = max(rows[1] - rows[0], 1)
    w = np.ones(n, dtype=np.float32)
    if rows[0] > lung_rows[0]:
        w *= np.clip((r - rows[0]) / (0.2 * span), 0, 1)
    if rows[1] < lung_rows[1]:
        w *= np.clip((rows[1] - r) / (0.2 * span), 0, 1)
    return w[:, None]


def _heart_taper(phantom: ChestPhantom, box: tuple[int, int, int, int]) -> Arr:
    """0 at the heart border rising to 1 over ~4 mm, over ``box`` (x0, y0, x1, y1).

    The heart's own edge is a gradual chord, so opacity stopping hard at the mask would leave
    a dark crescent just inside the heart; fading it keeps the border natural.
    """
    mm = _body_mm_per_px(phantom)
    pad = math.ceil(8.0 / mm) + 1
    x0, y0, x1, y1 = box
    rows, cols = phantom.heart_mask.shape
    ex0, ey0, ex1, ey1 = (
        max(x0 - pad, 0),
        max(y0 - pad, 0),
        min(x1 + pad, cols),
        min(y1 + pad, rows),
    )
    heart = phantom.heart_mask[ey0:ey1, ex0:ex1]
    if not heart.any():
        return np.ones((y1 - y0, x1 - x0), dtype=np.float32)
    dist = ndimage.distance_transform_edt(~heart) * mm
    ramp = np.clip(dist / 4.0, 0.0, 1.0)
    taper = ramp * ramp * (3.0 - 2.0 * ramp)
    return np.asarray(taper[y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0], dtype=np.float32)


def add_consolidation(phantom: ChestPhantom, rng: np.random.Generator) -> ConsolidationTruth:
    """Add patchy airspace opacity confined to one zone of one lung (in place).

    A union of random discs (segmental: 15-45 % of the zone, lobar: 55-90 %), with fuzzy
    margins (3-8 mm blur), patchy filling, and air bronchograms in some.  Strength is a
    fraction (severity) of the local aerated depth turned to fluid, so it is physically denser
    at the bases, where lungs are deeper.
    """
    _check_phantom(phantom)
    lobar = bool(rng.random() < 0.5)
    right, left = _split_lungs(phantom.lung_mask)
    order = rng.permutation(6)
    for pick in order:
        side_mask = right if pick < 3 else left
        if side_mask.sum() < 50:
            continue
        zone_mask, rows = _zone_mask(side_mask, int(pick % 3))
        if zone_mask.sum() >= 30:
            break
    else:
        raise ValueError("lung fields too small for a consolidation")
    lung_rows = _bbox(side_mask)[1::2]
    opacity, support = _opacity(phantom, zone_mask, rows, lung_rows, lobar, pick < 3, rng)
    severity = rng.uniform(0.55, 0.9) if lobar else rng.uniform(0.3, 0.65)
    x0, y0, x1, y1 = _bbox(zone_mask)
    window = (slice(y0, y1), slice(x0, x1))
    air = phantom.lung_air_mm[window] if phantom.lung_air_mm is not None else _DEFAULT_LUNG_AIR_MM
    opacity = opacity * _heart_taper(phantom, (x0, y0, x1, y1))
    added = (severity * AIR_DEFICIT * opacity * air).astype(np.float32)
    if not (added > 0).any():
        raise ValueError("consolidation came out empty")
    phantom.attenuation[window] += added
    bx0, by0, bx1, by1 = _bbox(added > 0)
    lung_px = float(phantom.lung_mask.sum())
    return ConsolidationTruth(
        bbox_px=(x0 + bx0, y0 + by0, x0 + bx1, y0 + by1),
        extent="lobar" if lobar else "segmental",
        area_fraction=float(support.sum()) / lung_px,
        lung="right" if pick < 3 else "left",
        zone=ZONES[int(pick % 3)],
    )


def _opacity(
    phantom: ChestPhantom,
    zone_mask: Mask,
    rows: tuple[int, int],
    lung_rows: tuple[int, int],
    lobar: bool,
    right_lung: bool,
    rng: np.random.Generator,
) -> tuple[Arr, Mask]:
    """Opacity (0..1) over the zone's bounding box, and its 50 % support inside the zone."""
    x0, y0, x1, y1 = _bbox(zone_mask)
    sub = zone_mask[y0:y1, x0:x1]
    factor = max(1, math.ceil(max(sub.shape) / 128))
    mm = _body_mm_per_px(phantom) * factor
    canvas = _Canvas(y0, x0, factor, mm, _downsample(sub, factor))
    union = _union_of_blobs(canvas, lobar, rng)
    margin = rng.uniform(3.0, 8.0) / mm
    smooth = ndimage.gaussian_filter(union, margin) * _zone_taper(canvas, rows, lung_rows)
    opacity = smooth * _patchiness(smooth.shape, mm, 0.6 if lobar else 0.4, rng)
    if rng.random() < (0.6 if lobar else 0.25):
        opacity = opacity * (
            1.0 - 0.45 * _bronchograms(canvas, opacity, 1 if right_lung else -1, rng)
        )
    full = _upsample(opacity, factor, sub.shape) * sub
    full[full < 0.02] = 0.0
    support = (_upsample(smooth, factor, sub.shape) >= 0.5) & sub
    return full, support
