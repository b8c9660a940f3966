"""pydicom's warnings, recorded for one read at a time.

pydicom reports several problems of a file only as warnings (data cut short, pixel data that
disagrees with the header), so the readers record them with `warnings.catch_warnings`. That
context manager swaps process-wide state: two intake threads reading at once would record each
other's warnings (a C-STORE of a damaged file failing a healthy upload) and could leave the
filters altered when they exit out of order. Every block that records or silences pydicom's
warnings goes through `recorded_warnings`, which holds one lock for the block, so no two of them
overlap. The cost is that such blocks run one at a time; they are parsing and decoding, which
hold the GIL for most of their time anyway.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

_LOCK = threading.RLock()
"""Reentrant: a recording block may call code that opens another (the outer one sees both)."""


@contextmanager
def recorded_warnings() -> Iterator[list[warnings.WarningMessage]]:
    """Every warning raised inside the block, in order; none is shown or filtered out."""
    with _LOCK, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield caught
