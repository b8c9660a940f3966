"""Image formation: attenuation line integrals to a processed 12-bit "for presentation" DX image.

Models what makes real radiographs differ from study to study and from the ideal projection:
exposure (dose) and beam quality, heel effect, collimation, scatter, signal-dependent quantum
noise, detector blur, and the vendor processing (log transform, dynamic-range compression,
edge enhancement, S-shaped tone curve).  Output is MONOCHROME2: higher = denser = brighter.

Spatial scales are tied to the image size, not to millimetres, because the function only sees
the attenuation array: every supported geometry spans a 340-430 mm field, so a fraction of the
long side is a stable physical scale (1 % is about 4 mm).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import ndimage

Arr = npt.NDArray[Any]
F32 = npt.NDArray[np.float32]


def _upsample(small: Arr, shape: tuple[int, int], factor: int) -> F32:
    """Separable bilinear upsampling of a block-averaged image back to ``shape``."""
    out = small
    for axis, n in enumerate(shape):
        pos = (np.arange(n, dtype=np.float32) + 0.5) / factor - 0.5
        pos = np.clip(pos, 0, out.shape[axis] - 1)
        i0 = np.minimum(np.floor(pos).astype(np.int64), out.shape[axis] - 2)
        i0 = np.maximum(i0, 0)
        w = (pos - i0).astype(np.float32)
        if out.shape[axis] == 1:
            out = np.repeat(out, n, axis=axis)
            continue
        a = np.take(out, i0, axis=axis)
        b = np.take(out, i0 + 1, axis=axis)
        w = w[:, None] if axis == 0 else w[None, :]
        out = a + (b - a) * w
    return np.asarray(out, dtype=np.float32)


def _lowpass(image: F32, sigma_px: float) -> F32:
    """Wide Gaussian blur computed on a block-averaged copy, so cost does not grow with sigma."""
    factor = max(1, int(sigma_px / 4.0))
    rows, cols = image.shape
    r, c = (rows // factor) * factor, (cols // factor) * factor
    if factor > 1:
        small = image[:r, :c].reshape(r // factor, factor, c // factor, factor).mean(axis=(1, 3))
    else:
        small = image
    small = ndimage.gaussian_filter(small, sigma_px / factor, mode="nearest")
    if factor == 1:
        return np.asarray(small, dtype=np.float32)
    return _upsample(small, (rows, cols), factor)


def _collimation(shape: tuple[int, ...], rng: np.random.Generator) -> F32:
    """Primary-beam transmission of the collimator: 1 inside, 0 behind the blades, soft edge."""
    rows, cols = shape
    size = max(rows, cols)
    edges = rng.uniform(0.0, 0.035, 4) * np.array([rows, rows, cols, cols])
    edges = np.where(rng.random(4) < 0.3, 0.0, edges)
    pen = max(0.002 * size, 0.7)
    y = np.arange(rows, dtype=np.float32)[:, None] + 0.5
    x = np.arange(cols, dtype=np.float32)[None, :] + 0.5

    def ramp(d: Arr) -> Arr:
        return np.clip(0.5 + d / (2 * pen), 0, 1)

    vert = ramp(y - edges[0]) * ramp(rows - edges[1] - y)
    horiz = ramp(x - edges[2]) * ramp(cols - edges[3] - x)
    return np.asarray(vert * horiz, dtype=np.float32)


def _fluence(attenuation: F32, collimator: F32, rng: np.random.Generator) -> F32:
    """Primary plus scatter reaching the detector, relative to the unattenuated beam."""
    rows, cols = attenuation.shape
    size = max(rows, cols)
    hardness = float(rng.uniform(0.9, 1.1))  # beam quality: kVp changes the effective mu
    y = np.linspace(-1.0, 1.0, rows, dtype=np.float32)[:, None]
    heel = 1.0 + float(rng.uniform(-0.08, 0.08)) * y
    primary = np.exp(-hardness * attenuation) * heel * collimator
    # scatter: a broad halo of the primary; relative to dense regions it is large, which is what
    # flattens the spine and heart in real films.  Level varies with grid use and patient size.
    spr = float(rng.uniform(0.25, 0.8))
    scatter = spr * _lowpass(primary, 0.08 * size)
    return np.asarray(primary + scatter, dtype=np.float32)


def _detect(fluence: F32, rng: np.random.Generator) -> F32:
    """Quantum noise (variance proportional to signal), electronic floor and detector blur."""
    # quanta per pixel scale with pixel area; the field is ~400 mm whatever the matrix size
    size = max(fluence.shape)
    dose = float(math.exp(rng.uniform(math.log(4000.0), math.log(25000.0))))
    quanta = dose * (1400.0 / size) ** 2
    sigma = np.sqrt(fluence / quanta + 2e-9)
    noisy = fluence + sigma * rng.standard_normal(fluence.shape, dtype=np.float32)
    blurred = ndimage.gaussian_filter(noisy, float(rng.uniform(0.55, 0.95)), truncate=3.0)
    return np.asarray(blurred, dtype=np.float32)


def _process(log_signal: F32, rng: np.random.Generator) -> F32:
    """Vendor-style processing: compress large-scale range, boost detail, sharpen edges."""
    size = max(log_signal.shape)
    base = _lowpass(log_signal, float(rng.uniform(0.04, 0.07)) * size)
    compress = float(rng.uniform(0.35, 0.55))
    detail = float(rng.uniform(0.2, 0.6))
    out = base * (1.0 - compress) + (log_signal - base) * (1.0 + detail)
    fine = ndimage.gaussian_filter(log_signal, 1.5, truncate=3.0)
    out += float(rng.uniform(0.2, 0.6)) * (log_signal - fine)
    return np.asarray(out, dtype=np.float32)


def _tone(processed: F32, exposed: npt.NDArray[np.bool_], rng: np.random.Generator) -> F32:
    """Window on the exposed area's histogram, then an S-shaped display curve into 0..1."""
    stride = max(1, int(math.sqrt(processed.size / 250_000)))
    sample = processed[::stride, ::stride][exposed[::stride, ::stride]]
    if sample.size < 16:
        sample = processed.ravel()
    lo, hi = np.percentile(sample, [1.0, 99.9])
    lo += float(rng.normal(0, 0.03)) * (hi - lo)
    hi += float(rng.uniform(0.08, 0.2)) * (hi - lo)
    v = (processed - lo) / max(hi - lo, 1e-6)
    gamma = float(rng.uniform(2.5, 4.0))
    mid = float(rng.uniform(0.42, 0.52))
    s = 1.0 / (1.0 + np.exp(-gamma * (v - mid)))
    s0 = 1.0 / (1.0 + math.exp(gamma * mid))
    s1 = 1.0 / (1.0 + math.exp(-gamma * (1.0 - mid)))
    return np.asarray((s - s0) / (s1 - s0), dtype=np.float32)


def expose(attenuation: np.ndarray, rng: np.random.Generator, bits_stored: int = 12) -> np.ndarray:
    """Simulate acquisition and processing of an attenuation map into a uint16 DX image.

    Returns values in [0, 2**bits_stored - 1], MONOCHROME2.  Direct exposure (air) maps near
    the bottom of the range, bone and abdomen near the top, collimated borders to the top.
    """
    if not isinstance(bits_stored, int | np.integer) or not 8 <= int(bits_stored) <= 16:
        raise ValueError(f"bits_stored must be an integer in 8..16, got {bits_stored!r}")
    atten = np.asarray(attenuation)
    if atten.ndim != 2 or min(atten.shape) < 8:
        raise ValueError(f"attenuation must be a 2-D image, got shape {atten.shape}")
    atten = atten.astype(np.float32, copy=False)
    if not np.all(np.isfinite(atten)):
        raise ValueError("attenuation contains non-finite values")
    atten = np.clip(atten, 0.0, 12.0)
    collimator = _collimation(atten.shape, rng)
    detected = _detect(_fluence(atten, collimator, rng), rng)
    log_signal = -np.log(np.clip(detected, 1e-5, None)).astype(np.float32)
    # window on the patient only: exclude blades and the direct-exposure background
    anatomy = (collimator > 0.99) & (atten > 1.0)
    display = _tone(_process(log_signal, rng), anatomy, rng)
    top = 2 ** int(bits_stored) - 1
    margin = float(rng.uniform(0.01, 0.04))
    scaled = (margin + (1.0 - 2.0 * margin) * display) * top
    return np.asarray(np.clip(np.rint(scaled), 0, top), dtype=np.uint16)
