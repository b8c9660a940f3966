"""Class activation maps as image-sized heatmaps for overlays.

The model's CAM is a coarse grid of logits that covers the whole input image, each cell standing
for a block of pixels. Upsampling treats cell values as block centres (the `align_corners=False`
convention), so a blob in the grid lands over the same anatomy in the image whatever the sizes.
"""

from __future__ import annotations

import numpy as np

from diagnostics.errors import ReportError


def _linear_weights(n_out: int, n_in: int) -> np.ndarray:
    """(n_out, n_in) matrix doing 1-D linear interpolation between block centres.

    Output pixel i sits at input coordinate (i + 0.5) * n_in / n_out - 0.5; beyond the first and
    last centres the edge value is held, as bilinear upsampling with edge clamping does.
    """
    position = (np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5
    position = np.clip(position, 0.0, n_in - 1.0)
    low = np.floor(position).astype(np.int64)
    high = np.minimum(low + 1, n_in - 1)
    frac = position - low
    weights = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)
    np.add.at(weights, (rows, low), 1.0 - frac)
    np.add.at(weights, (rows, high), frac)
    return weights


def upsample(cam: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bilinear upsampling of an (h, w) map to (rows, cols), float64, values unchanged in kind."""
    if cam.ndim != 2 or min(cam.shape) < 1:
        raise ReportError(f"a class activation map must be a 2-D array, not shape {cam.shape}")
    if rows < 1 or cols < 1:
        raise ReportError(f"cannot draw a heatmap of {rows} x {cols} pixels")
    values = np.asarray(cam, dtype=np.float64)
    if not np.isfinite(values).all():
        raise ReportError("the class activation map holds NaN or infinite values")
    h, w = values.shape
    result: np.ndarray = _linear_weights(rows, h) @ values @ _linear_weights(cols, w).T
    return result


def heatmap(cam: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(h, w) logit-unit CAM -> float32 (rows, cols) in [0, 1]: bilinear upsampling, then sigmoid.

    The sigmoid keeps the map's meaning (0.5 where the evidence is neutral) instead of stretching
    each map to its own range, which would make a faint map look as certain as a strong one.
    """
    logits = upsample(cam, rows, cols)
    return (0.5 * (1.0 + np.tanh(0.5 * logits))).astype(np.float32)
