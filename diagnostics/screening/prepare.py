"""Stage 2, prepare: each admitted instance decoded and preprocessed into a model input.

An admitted instance that cannot be decoded or preprocessed is `failed`, and so is its study
(the finding may be on exactly that image); the study's other images are still prepared, so the
appearance gate can say which of them were unlike the training images, but none goes to the
model.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

from diagnostics.dicom.header import ReadLimits
from diagnostics.dicom.reader import read_instance
from diagnostics.errors import InputError
from diagnostics.preprocess import PreprocessSpec, preprocess_image
from diagnostics.results import InstanceResult
from diagnostics.screening.stages import (
    Gated,
    Prepared,
    PreparedImage,
    StageClock,
    failed_instance,
)

PREPROCESS_FAILURES: tuple[type[BaseException], ...] = (ValueError, RuntimeError, TypeError)
"""What MONAI and torch raise on an image they cannot transform."""


def prepare(
    gated: Gated,
    spec: PreprocessSpec,
    limits: ReadLimits | None = None,
    clock: StageClock | None = None,
) -> Prepared:
    """Decode (timed as "ingest") and preprocess (as "preprocess") every admitted instance.

    Decoding asks for no more than the model's input size: a large JPEG 2000 image is decoded
    at a reduced resolution level (`decode_image`), which the preprocessing then resizes as it
    would the full image.

    Anything else a decoder raises (an OSError reading the file) is not caught: it stops the
    whole `screen` call, whose caller records the study as failed.
    """

    def timed(name: str) -> AbstractContextManager[None]:
        return clock.stage(name) if clock is not None else nullcontext()

    images: list[PreparedImage] = []
    settled: dict[str, InstanceResult] = dict(gated.settled)
    failure: str | None = None
    for item in gated.admitted:
        uid = item.uids.sop_instance_uid
        try:
            with timed("ingest"):
                if item.parsed is not None:
                    image = item.parsed.decode(spec.size)
                else:
                    image = read_instance(item.source, limits, spec.size)
            with timed("preprocess"):
                tensor = preprocess_image(image, spec)
        except InputError as exc:
            reason = f"the image could not be read: {exc}"
        except PREPROCESS_FAILURES as exc:
            reason = f"the image could not be preprocessed: {exc}"
        else:
            images.append(PreparedImage(uid, image, tensor))
            continue
        settled[uid] = failed_instance(uid, reason)
        failure = failure or reason
    return Prepared(gated.study, tuple(images), settled, failure)
