"""The chest phantom's shared vocabulary: units, the detector and body descriptions, the result.

Coordinates and units are those of `diagnostics.synth.anatomy` (see its docstring): anatomy in
body millimetres, attenuation as a dimensionless line integral. The small numeric helpers here
are the shapes every part of the body is drawn with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
Arr = npt.NDArray[Any]
Mask = npt.NDArray[np.bool_]

MU_SOFT = 0.019
"""Effective linear attenuation of soft tissue, 1/mm."""
AIR_DEFICIT = 0.8 * MU_SOFT
"""Attenuation removed per mm of aerated lung depth (lung is ~20 % tissue by volume)."""


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


def f32(x: Any) -> F32:
    """View any array-like as float32 (no copy when it already is)."""
    return np.asarray(x, dtype=np.float32)


def smoothstep(x: Arr | float, e0: float, e1: float) -> Arr:
    t = np.clip((np.asarray(x, dtype=np.float32) - e0) / (e1 - e0), 0.0, 1.0)
    return f32(t * t * (3.0 - 2.0 * t))


def tube(q: Arr, wall: float = 0.25, core: float = 0.45) -> Arr:
    """Projected chord of a bone tube (cortex plus lighter marrow), q in [-1, 1], peak ~1."""
    outer = np.sqrt(np.clip(1.0 - q * q, 0.0, None))
    rin = 1.0 - wall
    inner = np.sqrt(np.clip(rin * rin - q * q, 0.0, None))
    return (outer - (1.0 - core) * inner) / (1.0 - (1.0 - core) * rin + 1e-6)


def cylinder_chord(dist: Arr, radius: float) -> Arr:
    """Chord length (mm) through a cylinder at a perpendicular distance from its axis."""
    return 2.0 * np.sqrt(np.clip(radius * radius - dist * dist, 0.0, None))


def segment_distance(xs: Arr, ys: Arr, p0: tuple[float, float], p1: tuple[float, float]) -> Arr:
    """Distance from every grid point to the segment p0-p1 (mm)."""
    dx, dy = p1[0] - p0[0], p1[1] - p0[1]
    length2 = dx * dx + dy * dy
    t = np.clip(((xs - p0[0]) * dx + (ys - p0[1]) * dy) / length2, 0.0, 1.0)
    return np.hypot(xs - p0[0] - t * dx, ys - p0[1] - t * dy)


def splat(shape: tuple[int, int], rows: Arr, cols: Arr, weights: Arr) -> F32:
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
