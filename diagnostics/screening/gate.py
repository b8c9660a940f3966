"""The header gate: which instances the model package says it may read.

Each refusal is a sentence a technologist or radiologist can act on, e.g. "CT is outside this
model's scope: it reads DX or CR images of the CHEST in PA or AP view". The image-level
appearance check (`diagnostics.appearance`) runs later, on the preprocessed pixels.
"""

from __future__ import annotations

from diagnostics.dicom.image import InstanceInfo
from diagnostics.package import InputScope


def describe_scope(scope: InputScope) -> str:
    return (
        f"{' or '.join(scope.modalities)} images of the {' or '.join(scope.body_parts)} "
        f"in {' or '.join(scope.views)} view"
    )


def _field(label: str, value: str | None, accepted: list[str], scope: InputScope) -> str | None:
    if value is None:
        return (
            f"{label} is missing from the header, so the image cannot be shown to be in this "
            f"model's scope: it reads {describe_scope(scope)}"
        )
    if value.upper() not in accepted:
        return f"{label} {value} is outside this model's scope: it reads {describe_scope(scope)}"
    return None


def out_of_scope_reason(info: InstanceInfo, scope: InputScope) -> str | None:
    """None when the header puts the instance in scope, else why it is not analysed."""
    if info.modality.upper() not in scope.modalities:
        return (
            f"{info.modality or 'an unknown modality'} is outside this model's scope: "
            f"it reads {describe_scope(scope)}"
        )
    for reason in (
        _field("Body Part Examined", info.body_part, scope.body_parts, scope),
        _field("View Position", info.view_position, scope.views, scope),
    ):
        if reason is not None:
            return reason
    if info.photometric_interpretation not in scope.photometric_interpretations:
        return (
            f"Photometric Interpretation {info.photometric_interpretation} is outside this "
            f"model's scope: it reads {' or '.join(scope.photometric_interpretations)} images"
        )
    if info.frames != 1:
        return f"a multi-frame image ({info.frames} frames) is outside this model's scope"
    if info.rows < scope.min_rows or info.columns < scope.min_columns:
        return (
            f"the image is {info.columns} x {info.rows} pixels, smaller than the "
            f"{scope.min_columns} x {scope.min_rows} this model needs"
        )
    return None
