"""Stage 4, infer: one model call for a group of prepared studies.

The pipeline forms groups that never split a study, so a failed call (`InferenceError`: a
runtime error, a wrong shape, NaN, a timeout) fails only the studies inside it, every image of
them `failed`. A study that already failed, or has nothing left to read, is passed on untouched.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from diagnostics.errors import InferenceError
from diagnostics.screening.engine import Engine
from diagnostics.screening.stages import ImageOutput, Inferred, Prepared, failed_instance


def _not_run(study: Prepared) -> Inferred:
    return Inferred(study.study, study.images, (), study.settled, study.failure)


def infer(group: Sequence[Prepared], engine: Engine) -> list[Inferred]:
    """Logits and CAMs for each image of each live study; one `Inferred` per study, in order."""
    out = [_not_run(study) for study in group]
    live = [i for i, study in enumerate(group) if study.failure is None and study.images]
    if not live:
        return out
    batch = np.stack([image.tensor.numpy() for i in live for image in group[i].images])
    try:
        result = engine.run(batch)
    except InferenceError as exc:
        reason = f"the model could not analyse the image: {exc}"
        for i in live:
            out[i] = _failed(group[i], reason)
        return out
    start = 0
    for i in live:
        study = group[i]
        end = start + len(study.images)
        outputs = tuple(ImageOutput(result.logits[k], result.cams[k]) for k in range(start, end))
        out[i] = Inferred(study.study, study.images, outputs, study.settled)
        start = end
    return out


def _failed(study: Prepared, reason: str) -> Inferred:
    settled = dict(study.settled)
    for image in study.images:
        settled[image.uid] = failed_instance(image.uid, reason)
    return Inferred(study.study, (), (), settled, reason)
