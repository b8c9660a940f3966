"""The screening stage contract: the values that pass between stages, and the stage clock.

Screening is a fixed graph of module-level functions (docs/architecture.md, "Screening stages"):

    read_headers ─► gate_headers ─► prepare ─► gate_appearance ─► infer ─► interpret
     (ingest)        (gate)          (prepare)   (gate)            (infer)   (interpret)

Every value here is frozen and every stage returns a new one, so a stage can be read, tested and
reordered on its own, and the prepare thread and the model thread never share anything that
changes. An instance a stage settles (refused: `not_analyzed`; broken: `failed`) goes into
`settled` and no later stage looks at it again; an instance the model did not read is never
reported as `analyzed` (the fail-safe rule).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from diagnostics.dicom.grouping import Study
from diagnostics.dicom.image import DicomImage, InstanceInfo, InstanceUids
from diagnostics.dicom.reader import ParsedInstance, Source
from diagnostics.errors import InputError
from diagnostics.results import InstanceResult


@dataclass(frozen=True)
class SourceInstance:
    """One source whose header was read: what the gate judges and `prepare` decodes."""

    label: str
    """The path, or "item N" for in-memory bytes: how a rejection names it."""
    source: Source
    info: InstanceInfo
    parsed: ParsedInstance | None = None
    """Set for in-memory sources: parsed once, decoded later if in scope."""

    @property
    def uids(self) -> InstanceUids:
        return self.info.uids


@dataclass(frozen=True)
class Rejected:
    """A source that could not be attributed to a study at all."""

    source: str
    error: InputError


@dataclass(frozen=True)
class Gated:
    """A study after the header gate: the instances the model may read, and the refused ones."""

    study: Study[SourceInstance]
    admitted: tuple[SourceInstance, ...]
    settled: Mapping[str, InstanceResult]
    """`not_analyzed` results per SOP Instance UID, each with the reason the header gave."""


@dataclass(frozen=True)
class PreparedImage:
    """An admitted instance, decoded and preprocessed into one model input."""

    uid: str
    """SOP Instance UID, as the header gate saw it."""
    image: DicomImage
    tensor: torch.Tensor
    """(C, H, W) float32, the package's preprocessing applied."""
    appearance: float | None = None
    """The appearance score, once the appearance gate has looked (None: the package has no
    profile)."""


@dataclass(frozen=True)
class Prepared:
    """A study after `prepare` (and again after the appearance gate): model inputs, settled rest."""

    study: Study[SourceInstance]
    images: tuple[PreparedImage, ...]
    settled: Mapping[str, InstanceResult]
    failure: str | None = None
    """The first reason an image of this study failed; a failed study is not given to the model."""


@dataclass(frozen=True)
class ImageOutput:
    """What the model produced for one image."""

    logits: np.ndarray
    """float32 (K,)."""
    cams: np.ndarray
    """float32 (K, h, w)."""


@dataclass(frozen=True)
class Inferred:
    """A study after `infer`: `outputs[i]` belongs to `images[i]`.

    Outputs are kept per study: two studies may (wrongly) share a SOP Instance UID and must
    never get each other's answers. `outputs` is empty when the model did not run on the study
    (it failed before, or nothing was admitted); when the model call failed, `images` is empty
    too and every image is settled as `failed`.
    """

    study: Study[SourceInstance]
    images: tuple[PreparedImage, ...]
    outputs: tuple[ImageOutput, ...]
    settled: Mapping[str, InstanceResult]
    failure: str | None = None


def failed_instance(uid: str, reason: str) -> InstanceResult:
    return InstanceResult(sop_instance_uid=uid, status="failed", reason=reason)


class StageClock:
    """Wall time per stage name, summed over a `screen` call, for metrics and benchmarks.

    The one mutable thing the stages share: instrumentation, never data.
    """

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start
