"""Model-only inference on preprocessed tensors, for the service's adaptive-batching endpoint.

Callers that run the model package's preprocessing themselves send `float32 [N, C, H, W]`
tensors and get calibrated probabilities `[N, K]` back, in the manifest's finding order.
BentoML's batchable API merges concurrent requests into one call along axis 0.
"""

from __future__ import annotations

import numpy as np

from diagnostics.errors import RequestError
from diagnostics.screening import Screener
from diagnostics.screening.interpret import probabilities


def check_tensors(screener: Screener, images: np.ndarray) -> np.ndarray:
    """`images` as float32, or a `RequestError` naming the shape the model expects."""
    expected = screener.engine.input_shape
    if images.ndim != 4 or tuple(images.shape[1:]) != tuple(expected):
        raise RequestError(
            f"images must have shape [N, {', '.join(map(str, expected))}] (the model package's "
            f"preprocessed input), not {list(images.shape)}"
        )
    if not np.all(np.isfinite(images)):
        raise RequestError("images contain NaN or infinite values")
    return images.astype(np.float32, copy=False)


def infer_probabilities(screener: Screener, images: np.ndarray) -> np.ndarray:
    """Calibrated probabilities `[N, K]` for preprocessed images `[N, C, H, W]`."""
    batch = check_tensors(screener, images)
    output = screener.engine.run(batch)
    return np.asarray(probabilities(screener.package.manifest, output.logits), dtype=np.float32)


def finding_codes(screener: Screener) -> list[str]:
    return [spec.code for spec in screener.package.manifest.findings]
