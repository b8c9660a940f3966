"""Placing the body on the detector: the work grid, the affine frame and resampling.

Everything is evaluated once on a body-aligned work grid (so cost barely depends on the output
size), then resampled by a single affine map (body scale, tilt, positioning) onto the detector's
pixel grid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from diagnostics.synth.phantom import F32, Arr, Geometry, Habitus
from diagnostics.synth.plan import Plan

# long side of the body work grid: sets cost and the finest anatomical detail.  Big detectors get
# a finer grid (sharper bone edges at full resolution) at a cost that still stays near 1 s.
_WORK_PIXELS = (640, 1152)


@dataclass(frozen=True)
class Grid:
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


# --------------------------------------------------------------------------------------------
# placing the body on the detector


@dataclass(frozen=True)
class Frame:
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


def place_body(geometry: Geometry, hab: Habitus, p: Plan, rng: np.random.Generator) -> Frame:
    """Shrink the body if the field is too small, centre it, and apply tilt and jitter."""
    fw, fh = geometry.field_mm
    need_w = 2.0 * (p.hw + 11.0 + 0.6 * hab.soft_tissue_mm)
    need_h = p.height + 110.0
    scale = min(1.0, 0.96 * fw / need_w, 0.96 * fh / need_h)
    spare = fh - scale * p.height
    top = float(np.clip(0.3 * spare + rng.normal(0, 0.03 * spare), 0.12 * spare, 0.45 * spare))
    ox = 0.5 * fw + float(rng.normal(0, 0.012 * fw))
    tilt = math.radians(hab.tilt_deg + float(rng.normal(0, 0.6)))
    return Frame(scale, (ox, top), math.cos(tilt), math.sin(tilt), geometry.spacing_mm)


def work_grid(geometry: Geometry, frame: Frame) -> Grid:
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
    return Grid(x0, y0, float(step), nx, ny)


def resample(
    field: F32,
    grid: Grid,
    frame: Frame,
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
