"""PNGs for the review page: the source image under a chosen window, and the heatmap layer.

The browser never sees DICOM: the server decodes the stored instance with the library's own
reader (so the page shows exactly what the model read, MONOCHROME1 already inverted) and
windows it into 8-bit grey. Window centre and width are in the image's modality units, as a
PACS viewer's are. The heatmap is a separate transparent PNG so the page can toggle it; it is
drawn at a reduced size (it is smooth, the browser scales it up) and in the same colours and
opacity as the burned-in DICOM overlay.
"""

from __future__ import annotations

import io
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from diagnostics.dicom.image import DicomImage
from diagnostics.errors import RequestError
from diagnostics.reports.heatmap import heatmap
from diagnostics.reports.overlay import HEAT_ALPHA

MAX_IMAGE_SIDE = 2048
"""Larger images are sent scaled down to this; overlays use source pixels, so they still fit."""
HEAT_SIDE = 384
DEFAULT_CACHE_BYTES = 256 << 20
"""What the review page's image cache may hold: a dozen decoded radiographs."""


@dataclass(frozen=True)
class DisplayWindow:
    center: float
    width: float

    @classmethod
    def default(cls, image: DicomImage, frame: int = 0) -> DisplayWindow:
        """The image's first VOI window, or its 1st to 99th percentile when it has none
        (the same choice as the burned-in overlay)."""
        if image.windows:
            return cls(float(image.windows[0].center), float(image.windows[0].width))
        low, high = (float(v) for v in np.percentile(image.pixels[frame], [1.0, 99.0]))
        high = max(high, low + 1.0)
        return cls((low + high) / 2.0, high - low)

    @classmethod
    def parse(cls, center: str | None, width: str | None) -> DisplayWindow | None:
        """From query parameters; None when neither is given."""
        if not center and not width:
            return None
        try:
            c, w = float(center or "nan"), float(width or "nan")
        except ValueError:
            raise RequestError("wc and ww must be numbers (window centre and width)") from None
        if not (math.isfinite(c) and math.isfinite(w) and w > 0):
            raise RequestError("the window needs a finite centre and a positive width")
        return cls(c, w)


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)  # speed over size: it is sent once
    return buffer.getvalue()


def _fit(rows: int, cols: int, side: int) -> tuple[int, int]:
    scale = min(1.0, side / max(rows, cols))
    return max(1, round(rows * scale)), max(1, round(cols * scale))


def windowed(image: DicomImage, frame: int, window: DisplayWindow) -> np.ndarray:
    """One frame as uint8 grey: linear between centre -/+ width/2, denser brighter."""
    pixels = np.asarray(image.pixels[frame], dtype=np.float32)
    low = window.center - window.width / 2.0
    scaled = np.clip((pixels - low) / window.width, 0.0, 1.0)
    grey: np.ndarray = np.round(scaled * 255.0).astype(np.uint8)
    return grey


def image_png(image: DicomImage, frame: int, window: DisplayWindow | None) -> bytes:
    grey = Image.fromarray(windowed(image, frame, window or DisplayWindow.default(image, frame)))
    rows, cols = _fit(image.info.rows, image.info.columns, MAX_IMAGE_SIDE)
    if (rows, cols) != (image.info.rows, image.info.columns):
        grey = grey.resize((cols, rows), Image.Resampling.LANCZOS)
    return _png(grey)


def heatmap_png(maps: Sequence[np.ndarray], rows: int, cols: int) -> bytes:
    """RGBA: red to yellow where any of `maps` (logit CAMs) shows positive evidence, clear
    where the evidence is neutral or negative, at most `HEAT_ALPHA` opaque."""
    out_rows, out_cols = _fit(rows, cols, HEAT_SIDE)
    heat = np.zeros((out_rows, out_cols), dtype=np.float32)
    for cam in maps:
        heat = np.maximum(heat, heatmap(cam, out_rows, out_cols))
    strength = np.clip((heat - 0.5) / 0.5, 0.0, 1.0)
    rgba = np.stack(
        [
            np.full_like(strength, 255.0),
            strength * 255.0,
            np.zeros_like(strength),
            HEAT_ALPHA * strength * 255.0,
        ],
        axis=-1,
    )
    return _png(Image.fromarray(np.round(rgba).astype(np.uint8), mode="RGBA"))


class ImageCache:
    """Recently decoded instances, so that dragging a window slider does not decode the file
    again for every PNG. Instance files never change (they are named by our own ids).

    Bounded in bytes, not entries, least recently used first out: four decoded float images
    can be a few megabytes or several gigabytes. An image larger than the whole budget is
    returned but not kept.
    """

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        if max_bytes < 0:
            raise ValueError("ImageCache.max_bytes must not be negative")
        self.max_bytes = max_bytes
        self._items: OrderedDict[Path, DicomImage] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    @property
    def held_bytes(self) -> int:
        with self._lock:
            return self._bytes

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def get(self, path: Path, load: Callable[[Path], DicomImage]) -> DicomImage:
        with self._lock:
            if path in self._items:
                self._items.move_to_end(path)
                return self._items[path]
        image = load(path)  # outside the lock: decoding may take a while
        size = int(image.pixels.nbytes)
        if size > self.max_bytes:
            return image
        with self._lock:
            if path not in self._items:
                self._items[path] = image
                self._bytes += size
            while self._bytes > self.max_bytes:
                _, evicted = self._items.popitem(last=False)
                self._bytes -= int(evicted.pixels.nbytes)
        return image
