"""A package's input scope from what its training data holds, narrowed by the recipe.

A fixed scope (512-pixel minimum, PA and AP) either refuses a package's own test images (trained
on 96 x 96) or admits views it never saw (trained on PA only). So the scope is read from the
training headers: the smallest image, the modalities, body parts, views and photometric
interpretations present. A recipe's `[scope]` table can only narrow that: its lists are
intersected with the data's, its minimum sizes raise the data's. Values a header lacks (a PNG
has no modality) are taken from the recipe's scope, or the chest radiograph default.
"""

from __future__ import annotations

from collections.abc import Sequence

from diagnostics.datasets.records import Example
from diagnostics.dicom import read_info
from diagnostics.errors import ConfigurationError, DatasetError, InputError
from diagnostics.images import plain_image_kind, plain_image_size
from diagnostics.package import InputScope

_FIELDS = {
    "modalities": "modality",
    "body_parts": "body_part",
    "views": "view_position",
    "photometric_interpretations": "photometric_interpretation",
}


def _seen(examples: Sequence[Example]) -> tuple[dict[str, set[str]], int, int]:
    """Header values per scope field, and the smallest rows and columns, over the examples."""
    seen: dict[str, set[str]] = {name: set() for name in _FIELDS}
    rows, columns = [], []
    for example in examples:
        try:
            if plain_image_kind(example.path):
                r, c = plain_image_size(example.path)
                rows.append(r)
                columns.append(c)
                continue
            info = read_info(example.path)
        except InputError as exc:
            raise DatasetError(f"{example.path}: {exc}") from None
        rows.append(info.rows)
        columns.append(info.columns)
        for name, attribute in _FIELDS.items():
            value = getattr(info, attribute)
            if value:
                seen[name].add(str(value).strip().upper())
    if not rows:
        raise DatasetError("no training images to derive the input scope from")
    return seen, min(rows), min(columns)


def derive_scope(
    examples: Sequence[Example], default: InputScope, narrowed: InputScope | None
) -> InputScope:
    """The scope the training `examples` support, narrowed by the recipe's `narrowed` scope."""
    seen, min_rows, min_columns = _seen(examples)
    base = narrowed or default
    update: dict[str, object] = {}
    for name in _FIELDS:
        allowed: list[str] = getattr(base, name)
        present = seen[name]
        if not present:  # no header said: keep what the recipe (or default) says
            update[name] = list(allowed)
        elif narrowed is None:
            update[name] = sorted(present)
        else:
            kept = [value for value in allowed if value in present]
            if not kept:
                raise ConfigurationError(
                    f"the recipe's scope.{name} {allowed} holds none of the training data's "
                    f"{sorted(present)}; widen scope.{name} or train on such images"
                )
            update[name] = kept
    update["min_rows"] = max(min_rows, narrowed.min_rows if narrowed else 1)
    update["min_columns"] = max(min_columns, narrowed.min_columns if narrowed else 1)
    return InputScope.model_validate({**base.model_dump(), **update})
