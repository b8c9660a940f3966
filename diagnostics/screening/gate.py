"""The gate: which instances the model package says it may read (stages 1 and 3).

`gate_headers` judges each instance by its header before anything is decoded; `gate_appearance`
judges the preprocessed pixels against the package's appearance profile (`diagnostics.appearance`)
once `prepare` has made them. A refused instance is `not_analyzed` with the reason below; it never
fails its study.

Each refusal is a sentence a technologist or radiologist can act on, e.g. "CT is outside this
model's scope: it reads DX or CR images of the CHEST in PA or AP view".

What counts as "the chest" is the model package's decision (its manifest scope), not this
module's. The rules, in order (README "Scope" says the same in plain words):

- Body Part Examined is compared with the scope's body parts and their other wording
  (`body_part_words`: THORAX, CHEST_PA, local languages) ignoring case, spaces, underscores,
  hyphens and apostrophe variants (Uzbek KO'KRAK written with U+02BB or U+2018).
- When Body Part Examined is missing or empty, the instance is still in scope if the header says
  chest another way: an Anatomic Region Sequence code in `body_part_codes`, or a scope word in the
  Study Description, Series Description or Protocol Name. Otherwise it is not analysed, and the
  reason says which attribute to fill in.
- When View Position is missing or empty, a View Code Sequence code in `view_codes`, or a scope
  view (PA, AP) in the descriptions without any other view named there, puts it in scope.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import replace

from pydicom.charset import convert_encodings, decode_bytes
from pydicom.dataset import Dataset

from diagnostics.appearance import AppearanceProfile
from diagnostics.dicom.grouping import Study
from diagnostics.dicom.image import InstanceInfo
from diagnostics.package import InputScope
from diagnostics.results import InstanceResult
from diagnostics.screening.stages import Gated, Prepared, PreparedImage, SourceInstance

DESCRIPTIONS = ("StudyDescription", "SeriesDescription", "ProtocolName")
"""Free-text attributes consulted only when the coded attribute is missing."""
APPEARANCE_LIMIT = 1.0
"""Appearance scores are scaled so that the profile's threshold is 1.0; above it is refused."""
OTHER_VIEWS = ("LAT", "LATERAL", "LL", "RL", "LLD", "RLD", "OBL", "OBLIQUE", "LEFT", "RIGHT")
"""View words that, in a description, mean the image may not be frontal."""
_APOSTROPHES = re.compile("[\u02bb\u02bc\u2018\u2019\u0060\u00b4\u02b9\u02c8\u2032]")
_SEPARATORS = re.compile(r"[\s_\-]+")
_NOT_WORD = re.compile(r"[^\w']+")


def normalise(text: str) -> str:
    """Case, width, spacing and apostrophe variants folded, so that site wording compares."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    folded = _APOSTROPHES.sub("'", folded)
    return _SEPARATORS.sub(" ", folded).strip()


def describe_scope(scope: InputScope) -> str:
    return (
        f"{' or '.join(scope.modalities)} images of the {' or '.join(scope.body_parts)} "
        f"in {' or '.join(scope.views)} view"
    )


def _charset_text(value: str | None, ds: Dataset) -> str | None:
    """A code string as the sender's character set spells it.

    pydicom decodes CS values as ISO 8859-1 whatever the Specific Character Set says; sites
    that write Body Part Examined in Cyrillic or UTF-8 get their bytes back in the right script.
    """
    if value is None or value.isascii():
        return value
    try:
        raw = value.encode("latin-1")
        charsets = ds.get("SpecificCharacterSet") or "ISO_IR 6"
        return decode_bytes(raw, convert_encodings(charsets), set()).strip() or None
    except (UnicodeError, LookupError, ValueError, TypeError):
        return value


def _codes(ds: Dataset, keyword: str) -> set[str]:
    return {str(item.get("CodeValue", "")) for item in ds.get(keyword) or [] if "CodeValue" in item}


def _description_words(ds: Dataset) -> str:
    texts = [str(ds.get(keyword) or "") for keyword in DESCRIPTIONS]
    return " " + _NOT_WORD.sub(" ", normalise(" ".join(texts))) + " "


def _says(words: str, phrases: list[str]) -> bool:
    return any(f" {_NOT_WORD.sub(' ', normalise(p)).strip()} " in words for p in phrases)


def _body_part_reason(info: InstanceInfo, scope: InputScope) -> str | None:
    accepted = [*scope.body_parts, *scope.body_part_words]
    body_part = _charset_text(info.body_part, info.dataset)
    if body_part is not None:
        if normalise(body_part) in {normalise(word) for word in accepted}:
            return None
        return (
            f"Body Part Examined {body_part} is outside this model's scope: it reads "
            f"{describe_scope(scope)}"
        )
    if _codes(info.dataset, "AnatomicRegionSequence") & set(scope.body_part_codes):
        return None
    if _says(_description_words(info.dataset), accepted):
        return None
    return (
        "Body Part Examined is missing from the header and nothing else in it (Anatomic Region "
        "Sequence, Study or Series Description, Protocol Name) says "
        f"{' or '.join(scope.body_parts)}, so the image cannot be shown to be in this model's "
        "scope; set Body Part Examined at "
        f"the modality. This model reads {describe_scope(scope)}"
    )


def _view_reason(info: InstanceInfo, scope: InputScope) -> str | None:
    view = _charset_text(info.view_position, info.dataset)
    if view is not None:
        if normalise(view) in {normalise(v) for v in scope.views}:
            return None
        return (
            f"View Position {view} is outside this model's scope: it reads {describe_scope(scope)}"
        )
    if _codes(info.dataset, "ViewCodeSequence") & set(scope.view_codes):
        return None
    words = _description_words(info.dataset)
    others = [v for v in OTHER_VIEWS if v not in scope.views]
    if _says(words, scope.views) and not _says(words, others):
        return None
    return (
        "View Position is missing from the header and neither the View Code Sequence nor the "
        f"descriptions say {' or '.join(scope.views)} alone, so the image cannot be shown to be "
        f"in this model's scope; set View Position at the modality. This model reads "
        f"{describe_scope(scope)}"
    )


def out_of_scope_reason(info: InstanceInfo, scope: InputScope) -> str | None:
    """None when the header puts the instance in scope, else why it is not analysed."""
    if info.modality.upper() not in scope.modalities:
        return (
            f"{info.modality or 'an unknown modality'} is outside this model's scope: "
            f"it reads {describe_scope(scope)}"
        )
    for reason in (_body_part_reason(info, scope), _view_reason(info, scope)):
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


def gate_headers(study: Study[SourceInstance], scope: InputScope) -> Gated:
    """Header gate: out-of-scope instances are settled `not_analyzed` and never decoded."""
    admitted: list[SourceInstance] = []
    settled: dict[str, InstanceResult] = {}
    for item in study.instances:
        reason = out_of_scope_reason(item.info, scope)
        if reason is None:
            admitted.append(item)
            continue
        uid = item.uids.sop_instance_uid
        settled[uid] = InstanceResult(sop_instance_uid=uid, status="not_analyzed", reason=reason)
    return Gated(study, tuple(admitted), settled)


def gate_appearance(
    prepared: Prepared, profile: AppearanceProfile | None, scope: InputScope
) -> Prepared:
    """Appearance gate: each prepared image gets its score; one unlike the training images is
    settled `not_analyzed` with that score. Without a profile the study passes unchanged."""
    if profile is None:
        return prepared
    described = describe_scope(scope)
    kept: list[PreparedImage] = []
    settled = dict(prepared.settled)
    for image in prepared.images:
        score = float(profile.score(image.tensor.unsqueeze(0))[0])
        if not score > APPEARANCE_LIMIT:
            kept.append(replace(image, appearance=score))
            continue
        reason = (
            f"the image does not look like the {described} this model was trained on "
            f"(appearance score {score:.2f}, limit {APPEARANCE_LIMIT:.2f}); check the body part, "
            "view and orientation"
        )
        settled[image.uid] = InstanceResult(
            sop_instance_uid=image.uid, status="not_analyzed", reason=reason, appearance_score=score
        )
    return replace(prepared, images=tuple(kept), settled=settled)
