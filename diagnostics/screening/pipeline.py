"""Screening: DICOM sources -> read -> gate -> prepare -> infer -> interpret -> StudyResult.

This module only composes the stages (docs/architecture.md, "Screening stages"); each stage is a
module-level function over the frozen values in `stages.py`. The fail-safe rule: an instance
that cannot be read into a study is `rejected` with its error; an instance outside the model's
scope or unlike its training images is not analysed; an instance in scope that could not be
decoded, inferred or interpreted fails its whole study, because the finding may be on exactly
that image. A study reports findings only when the model ran on it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from diagnostics.dicom.header import ReadLimits
from diagnostics.dicom.reader import Source
from diagnostics.package import ModelPackage, load_package
from diagnostics.results import InstanceResult, StudyResult
from diagnostics.screening.batching import MicroBatcher
from diagnostics.screening.engine import Engine
from diagnostics.screening.engines import EngineChoice, open_engine
from diagnostics.screening.gate import gate_appearance, gate_headers
from diagnostics.screening.infer import infer
from diagnostics.screening.ingest import read_headers
from diagnostics.screening.interpret import interpret, model_ref
from diagnostics.screening.outcome import ScreeningOutcome
from diagnostics.screening.prepare import prepare
from diagnostics.screening.stages import Gated, Inferred, Prepared, Rejected, StageClock

__all__ = ["Rejected", "ScreenBatch", "Screener", "failed_batch", "model_groups"]


@dataclass
class ScreenBatch:
    outcomes: list[ScreeningOutcome]
    rejected: list[Rejected]
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per stage (ingest, preprocess, appearance, infer, interpret), for metrics and
    benchmarks."""


def failed_batch(
    sources: Sequence[Source], reason: str, limits: ReadLimits | None = None
) -> ScreenBatch:
    """Every study `failed` with `reason`: for when no model can run at all."""
    studies, rejected = read_headers(sources, limits)
    outcomes = []
    for study in studies:
        instances = [
            InstanceResult(sop_instance_uid=i.uids.sop_instance_uid, status="failed", reason=reason)
            for i in study.instances
        ]
        result = StudyResult(
            study_instance_uid=study.study_instance_uid,
            status="failed",
            reason=reason,
            instances=instances,
        )
        outcomes.append(ScreeningOutcome(result))
    return ScreenBatch(outcomes, rejected)


def model_groups(studies: Sequence[Gated], max_batch: int) -> Iterator[list[Gated]]:
    """Studies in groups of at most one model batch of admitted images (a larger study forms a
    group of its own; the engine splits it into batches). A group never splits a study, so a
    failed model call fails only the studies inside it."""
    group: list[Gated] = []
    size = 0
    for study in studies:
        count = len(study.admitted)
        if group and size + count > max_batch:
            yield group
            group, size = [], 0
        group.append(study)
        size += count
    if group:
        yield group


class Screener:
    """A loaded, verified model package and its inference engine, ready to screen studies."""

    def __init__(
        self, package: ModelPackage, engine: Engine, *, limits: ReadLimits | None = None
    ) -> None:
        self.package = package
        self.engine = engine
        self.limits = limits or ReadLimits()
        self.model_ref = model_ref(package)

    @classmethod
    def load(
        cls,
        package: str | Path | ModelPackage,
        *,
        threads: int | None = None,
        max_batch: int = 16,
        timeout_s: float | None = 120.0,
        limits: ReadLimits | None = None,
        batch_wait_s: float | None = None,
        engine: EngineChoice = "onnxruntime",
    ) -> Screener:
        """Load and verify a package (ModelPackageError when it is unusable) and its engine.

        With `batch_wait_s`, concurrent `screen` calls share model calls (`MicroBatcher`).
        `engine` picks the runtime (`diagnostics.screening.engines`).
        """
        loaded = package if isinstance(package, ModelPackage) else load_package(package)
        runner = open_engine(
            loaded, engine, threads=threads, max_batch=max_batch, timeout_s=timeout_s
        )
        if batch_wait_s is not None:
            runner = MicroBatcher(runner, max_wait_s=batch_wait_s)
        return cls(loaded, runner, limits=limits)

    def warm_up(self) -> None:
        """One inference on a blank image, so the first real study does not pay for start-up."""
        self.engine.run(np.zeros((1, *self.engine.input_shape), dtype=np.float32))

    def screen(self, sources: Sequence[Source]) -> ScreenBatch:
        """Screen DICOM files or byte strings, grouped into studies by Study Instance UID.

        Studies go through in groups of about one model batch; while the model reads one
        group, a second thread prepares the next, so the CPU never waits on either alone.
        """
        clock = StageClock()
        with clock.stage("ingest"):
            studies, rejected = read_headers(sources, self.limits)
        scope = self.package.manifest.scope
        groups = list(
            model_groups([gate_headers(s, scope) for s in studies], self.engine.max_batch)
        )
        inferred: list[Inferred] = []
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="screen-prepare") as pool:
            ahead = pool.submit(self._prepare_group, groups[0], clock) if groups else None
            for index, _ in enumerate(groups):
                assert ahead is not None
                prepared = ahead.result()
                if index + 1 < len(groups):
                    ahead = pool.submit(self._prepare_group, groups[index + 1], clock)
                with clock.stage("infer"):
                    inferred.extend(infer(prepared, self.engine))
        with clock.stage("interpret"):
            outcomes = [interpret(study, self.package) for study in inferred]
        return ScreenBatch(outcomes, rejected, dict(clock.seconds))

    def _prepare_group(self, group: list[Gated], clock: StageClock) -> list[Prepared]:
        """Prepare, then the appearance gate, for one group (on the prepare thread)."""
        manifest = self.package.manifest
        prepared = [prepare(study, manifest.preprocessing, self.limits, clock) for study in group]
        with clock.stage("appearance"):
            return [gate_appearance(p, manifest.appearance, manifest.scope) for p in prepared]
