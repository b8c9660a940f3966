"""What a reason may say: the one rule that keeps the server's folders out of what people see.

Reasons come from exceptions and readers and may name files with their folders (the storage
root, the model package, a temporary folder). A client or a reader of the result learns nothing
of the server's layout: every folder is dropped, file names (our own identifiers) stay.
"""

from __future__ import annotations

import re

from diagnostics.results import StudyResult

_DIRECTORIES = re.compile(r"(?:/[^/\s:'\"]+)+/")


def without_paths(text: str) -> str:
    """`text` with every folder dropped: `/srv/data/instances/0a1b.dcm` becomes `0a1b.dcm`."""
    return _DIRECTORIES.sub("", text)


def plain(text: str) -> str:
    """A reason fit for a person and for the result: server folders dropped (file names are
    our own identifiers), one line, bounded."""
    return " ".join(without_paths(text).split())[:500] or "no details"


def result_without_paths(result: StudyResult) -> StudyResult:
    """The result with `without_paths` applied to every reason in it, before it is recorded,
    written into DICOM outputs or sent anywhere."""
    data = result.model_dump(mode="json")
    if not _strip(data):
        return result
    return StudyResult.model_validate(data)


def _strip(node: object) -> bool:
    """Strip the folders from every `reason` in a dumped result, in place; whether any changed."""
    changed = False
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reason" and isinstance(value, str):
                stripped = without_paths(value)
                if stripped != value:
                    node[key] = stripped
                    changed = True
            else:
                changed = _strip(value) or changed
    elif isinstance(node, list):
        for item in node:
            changed = _strip(item) or changed
    return changed
