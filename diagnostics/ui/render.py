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
"""Without a `size`, larger images are sent scaled down to this; overlays use source pixels,
so they still fit."""
INITIAL_SIDE = 1024
"""What the study page asks for first: sharp at a fitted size; zooming asks for more."""
MIN_RENDER_SIDE = 16
MAX_RENDER_SIDE = 8192
"""The `size` a page may ask for: the viewer asks for what it displays (times the screen's
pixel ratio), so a zoomed image is sent at full resolution and a fitted one stays small on a
slow link. Never larger than the source: the browser scales up as well as we would."""
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
    return _grey(np.asarray(image.pixels[frame], dtype=np.float32), window)


def _grey(pixels: np.ndarray, window: DisplayWindow) -> np.ndarray:
    low = window.center - window.width / 2.0
    scaled = np.clip((pixels - low) / window.width, 0.0, 1.0)
    grey: np.ndarray = np.round(scaled * 255.0).astype(np.uint8)
    return grey


@dataclass(frozen=True)
class Region:
    """A crop of the source image in its own pixels: columns x0..x1, rows y0..y1 (exclusive)."""

    x0: int
    y0: int
    x1: int
    y1: int

    @classmethod
    def parse(cls, raw: str | None, rows: int, cols: int) -> Region | None:
        """From `region=x0,y0,x1,y1`; RequestError names what is wrong with it."""
        if not raw:
            return None
        parts = raw.split(",")
        if len(parts) != 4 or not all(p.strip().isdigit() and len(p.strip()) <= 6 for p in parts):
            raise RequestError("region must be four whole numbers x0,y0,x1,y1 (source pixels)")
        x0, y0, x1, y1 = (int(p) for p in parts)
        if not (0 <= x0 < x1 <= cols and 0 <= y0 < y1 <= rows):
            raise RequestError(
                f"region must lie inside the image ({cols} x {rows} pixels) with x0 < x1, y0 < y1"
            )
        return cls(x0, y0, x1, y1)


def render_side(raw: str | None) -> int | None:
    """The `size` parameter: the longest side of the PNG wanted, in pixels."""
    if not raw:
        return None
    text = raw.strip()
    if not text.isdigit() or len(text) > 5 or not MIN_RENDER_SIDE <= int(text) <= MAX_RENDER_SIDE:
        raise RequestError(
            f"size must be a whole number of pixels from {MIN_RENDER_SIDE} to {MAX_RENDER_SIDE}"
        )
    return int(text)


def image_png(
    image: DicomImage,
    frame: int,
    window: DisplayWindow | None,
    size: int | None = None,
    region: Region | None = None,
) -> bytes:
    """The frame (or `region` of it) windowed, scaled down to at most `size` on its longest
    side (`MAX_IMAGE_SIDE` without one), never up."""
    pixels = np.asarray(image.pixels[frame], dtype=np.float32)
    if region is not None:  # crop first: a small region of a large image windows fast
        pixels = pixels[region.y0 : region.y1, region.x0 : region.x1]
    grey = _grey(pixels, window or DisplayWindow.default(image, frame))
    picture = Image.fromarray(np.ascontiguousarray(grey))
    height, width = grey.shape
    rows, cols = _fit(height, width, size or MAX_IMAGE_SIDE)
    if (rows, cols) != (height, width):
        picture = picture.resize((cols, rows), Image.Resampling.LANCZOS)
    return _png(picture)


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
