"""The review page's image cache is bounded in bytes: least recently used out first."""

from __future__ import annotations

from pathlib import Path

from diagnostics.dicom import DicomImage, read_instance
from diagnostics.ui.render import ImageCache
from tests.dicom.bombs import image_dataset, part10


class Loads:
    """Decodes real instances of a given size and counts how often it had to."""

    def __init__(self, sides: dict[Path, int]) -> None:
        self.sides = sides
        self.count: dict[Path, int] = {}

    def __call__(self, path: Path) -> DicomImage:
        self.count[path] = self.count.get(path, 0) + 1
        side = self.sides[path]
        return read_instance(part10(image_dataset(side, side)))


def test_cache_holds_at_most_its_byte_budget_evicting_the_least_recent() -> None:
    one = 128 * 128 * 4  # a decoded float32 image
    a, b, c = Path("a"), Path("b"), Path("c")
    loads = Loads({a: 128, b: 128, c: 128})
    cache = ImageCache(max_bytes=2 * one + one // 2)
    cache.get(a, loads)
    cache.get(b, loads)
    cache.get(a, loads)  # a is now the most recent
    cache.get(c, loads)  # over budget: b goes, not a
    assert cache.held_bytes == 2 * one and len(cache) == 2
    cache.get(a, loads)
    cache.get(b, loads)
    assert loads.count == {a: 1, b: 2, c: 1}
    assert cache.held_bytes <= cache.max_bytes


def test_image_larger_than_the_budget_is_served_but_not_kept() -> None:
    big, small = Path("big"), Path("small")
    loads = Loads({big: 512, small: 64})
    cache = ImageCache(max_bytes=512 * 512 * 4 - 1)
    cache.get(small, loads)
    image = cache.get(big, loads)
    assert image.pixels.shape == (1, 512, 512)
    assert len(cache) == 1 and cache.held_bytes == 64 * 64 * 4  # the small one stays
    cache.get(big, loads)
    assert loads.count[big] == 2
