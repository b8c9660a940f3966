"""Stage 0, read: sources -> studies of `SourceInstance`, grouped by their headers.

Only headers are read here (in-memory sources are parsed once and decoded later, by `prepare`,
if the gate admits them). A source that cannot be attributed to a study is `Rejected` with its
error; it has no study whose result could carry it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from diagnostics.dicom.grouping import Study, group_studies
from diagnostics.dicom.header import ReadLimits
from diagnostics.dicom.reader import Source, parse_instance, read_info
from diagnostics.errors import InputError
from diagnostics.screening.stages import Rejected, SourceInstance


def _label(source: Source, index: int) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"item {index + 1}"
    return str(Path(source))


def read_headers(
    sources: Sequence[Source], limits: ReadLimits | None = None
) -> tuple[list[Study[SourceInstance]], list[Rejected]]:
    """Group sources into studies by their headers; unreadable ones are rejected."""
    items: list[SourceInstance] = []
    rejected: list[Rejected] = []
    for index, source in enumerate(sources):
        label = _label(source, index)
        try:
            if isinstance(source, (bytes, bytearray, memoryview)):
                parsed = parse_instance(source, limits)
                items.append(SourceInstance(label, source, parsed.info, parsed))
            else:
                items.append(SourceInstance(label, source, read_info(source, limits)))
        except InputError as exc:
            rejected.append(Rejected(label, exc))
    return group_studies(items), rejected
