"""Screening: DICOM sources -> ingest -> gate -> preprocess -> infer -> interpret -> StudyResult.

The fail-safe rule lives here. An instance that cannot be read into a study is `rejected` with
its error; an instance outside the model's scope or unlike its training images is not analysed;
an instance in scope that could not be decoded or inferred fails its whole study, because the
finding may be on exactly that image. A study reports findings only when the model ran on it.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from diagnostics.dicom.grouping import Study, group_studies
from diagnostics.dicom.header import ReadLimits
from diagnostics.dicom.image import DicomImage, InstanceInfo, InstanceUids
from diagnostics.dicom.reader import (
    ParsedInstance,
    Source,
    parse_instance,
    read_info,
    read_instance,
)
from diagnostics.errors import InferenceError, InputError
from diagnostics.package import ModelPackage, load_package
from diagnostics.preprocess import preprocess_image
from diagnostics.results import InstanceResult, ModelRef, StudyResult
from diagnostics.screening.batching import MicroBatcher
from diagnostics.screening.engine import Engine, OnnxEngine
from diagnostics.screening.gate import describe_scope, out_of_scope_reason
from diagnostics.screening.interpret import probabilities, study_findings
from diagnostics.screening.outcome import AnalysedInstance, ScreeningOutcome

PREPROCESS_FAILURES: tuple[type[BaseException], ...] = (ValueError, RuntimeError, TypeError)
"""What MONAI and torch raise on an image they cannot transform."""

INTERPRET_FAILURES: tuple[type[BaseException], ...] = (
    ValueError,
    ArithmeticError,
    IndexError,
    KeyError,
    TypeError,
)
"""What numpy and the interpretation raise on model outputs they cannot use (a wrong shape, a
NaN that slipped through): that study fails, the others in the batch stand."""


@dataclass(frozen=True)
class Rejected:
    """A source that could not be attributed to a study at all."""

    source: str
    error: InputError


@dataclass
class ScreenBatch:
    outcomes: list[ScreeningOutcome]
    rejected: list[Rejected]
    stage_seconds: dict[str, float] = field(default_factory=dict)
    """Wall time per stage (ingest, preprocess, infer, interpret), for metrics and benchmarks."""


@dataclass(frozen=True)
class _Item:
    label: str
    source: Source
    info: InstanceInfo
    parsed: ParsedInstance | None = None
    """Set for in-memory sources: parsed once, decoded later if in scope."""

    @property
    def uids(self) -> InstanceUids:
        return self.info.uids


@dataclass
class _Prepared:
    """An in-scope instance, decoded and preprocessed, waiting for the model."""

    image: DicomImage
    tensor: torch.Tensor
    appearance: float | None = None


@dataclass
class _StudyWork:
    study: Study[_Item]
    results: dict[str, InstanceResult] = field(default_factory=dict)
    prepared: dict[str, _Prepared] = field(default_factory=dict)
    outputs: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """Logits and CAMs per SOP Instance UID, kept per study: two studies may (wrongly) share a
    SOP Instance UID, and must never get each other's answers."""
    failure: str | None = None


def _label(source: Source, index: int) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"item {index + 1}"
    return str(Path(source))


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def stage(self, name: str) -> _Timer:
        return _Timer(self, name)


class _Timer:
    def __init__(self, clock: _Clock, name: str) -> None:
        self.clock, self.name = clock, name

    def __enter__(self) -> None:
        self.start = time.perf_counter()

    def __exit__(self, *_: object) -> None:
        self.clock.seconds[self.name] += time.perf_counter() - self.start


def read_headers(
    sources: Sequence[Source], limits: ReadLimits | None = None
) -> tuple[list[Study[_Item]], list[Rejected]]:
    """Group sources into studies by their headers; unreadable ones are rejected."""
    items: list[_Item] = []
    rejected: list[Rejected] = []
    for index, source in enumerate(sources):
        label = _label(source, index)
        try:
            if isinstance(source, (bytes, bytearray, memoryview)):
                parsed = parse_instance(source, limits)
                items.append(_Item(label, source, parsed.info, parsed))
            else:
                items.append(_Item(label, source, read_info(source, limits)))
        except InputError as exc:
            rejected.append(Rejected(label, exc))
    return group_studies(items), rejected


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


class Screener:
    """A loaded, verified model package and its inference engine, ready to screen studies."""

    def __init__(
        self, package: ModelPackage, engine: Engine, *, limits: ReadLimits | None = None
    ) -> None:
        self.package = package
        self.engine = engine
        self.limits = limits or ReadLimits()
        manifest = package.manifest
        self.model_ref = ModelRef(
            name=manifest.name, version=manifest.version, sha256=manifest.sha256
        )

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
    ) -> Screener:
        """Load and verify a package (ModelPackageError when it is unusable) and its engine.

        With `batch_wait_s`, concurrent `screen` calls share model calls (`MicroBatcher`).
        """
        loaded = package if isinstance(package, ModelPackage) else load_package(package)
        onnx = OnnxEngine(loaded, threads=threads, max_batch=max_batch, timeout_s=timeout_s)
        engine: Engine = onnx
        if batch_wait_s is not None:
            engine = MicroBatcher(onnx, max_wait_s=batch_wait_s)
        return cls(loaded, engine, limits=limits)

    def warm_up(self) -> None:
        """One inference on a blank image, so the first real study does not pay for start-up."""
        self.engine.run(np.zeros((1, *self.engine.input_shape), dtype=np.float32))

    def screen(self, sources: Sequence[Source]) -> ScreenBatch:
        """Screen DICOM files or byte strings, grouped into studies by Study Instance UID.

        Studies go through in groups of about one model batch; while the model reads one
        group, a second thread decodes and preprocesses the next, so the CPU never waits
        on either alone.
        """
        clock = _Clock()
        with clock.stage("ingest"):
            studies, rejected = read_headers(sources, self.limits)
        work = [_StudyWork(study) for study in studies]
        for item in work:
            self._gate(item)
        groups = list(self._groups(work))
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="screen-prepare") as pool:
            ahead = pool.submit(self._prepare_group, groups[0], clock) if groups else None
            for index, group in enumerate(groups):
                assert ahead is not None
                ahead.result()
                if index + 1 < len(groups):
                    ahead = pool.submit(self._prepare_group, groups[index + 1], clock)
                with clock.stage("infer"):
                    self._infer(group)
        with clock.stage("interpret"):
            outcomes = [self._interpreted(item) for item in work]
        return ScreenBatch(outcomes, rejected, dict(clock.seconds))

    def _gate(self, work: _StudyWork) -> None:
        """Header scope check: out-of-scope instances get their reason and are never decoded."""
        scope = self.package.manifest.scope
        for item in work.study.instances:
            reason = out_of_scope_reason(item.info, scope)
            if reason is not None:
                uid = item.uids.sop_instance_uid
                work.results[uid] = InstanceResult(
                    sop_instance_uid=uid, status="not_analyzed", reason=reason
                )

    def _prepare_group(self, group: list[_StudyWork], clock: _Clock) -> None:
        for item in group:
            self._prepare(item, clock)
        with clock.stage("appearance"):
            self._check_appearance(group)

    def _prepare(self, work: _StudyWork, clock: _Clock) -> None:
        spec = self.package.manifest.preprocessing
        for item in work.study.instances:
            uid = item.uids.sop_instance_uid
            if uid in work.results:
                continue
            try:
                with clock.stage("ingest"):
                    if item.parsed is not None:
                        image = item.parsed.decode()
                    else:
                        image = read_instance(item.source, self.limits)
                with clock.stage("preprocess"):
                    tensor = preprocess_image(image, spec)
            except InputError as exc:
                self._fail(work, uid, f"the image could not be read: {exc}")
                continue
            except PREPROCESS_FAILURES as exc:
                self._fail(work, uid, f"the image could not be preprocessed: {exc}")
                continue
            work.prepared[uid] = _Prepared(image, tensor)

    @staticmethod
    def _fail(work: _StudyWork, uid: str, reason: str) -> None:
        work.results[uid] = InstanceResult(sop_instance_uid=uid, status="failed", reason=reason)
        work.failure = work.failure or reason

    def _check_appearance(self, work: list[_StudyWork]) -> None:
        profile = self.package.manifest.appearance
        if profile is None:
            return
        scope = describe_scope(self.package.manifest.scope)
        for item in work:
            for uid, prepared in list(item.prepared.items()):
                score = float(profile.score(prepared.tensor.unsqueeze(0))[0])
                prepared.appearance = score
                if score > 1.0:
                    del item.prepared[uid]
                    reason = (
                        f"the image does not look like the {scope} this model was trained on "
                        f"(appearance score {score:.2f}, limit 1.00); check the body part, view "
                        "and orientation"
                    )
                    item.results[uid] = InstanceResult(
                        sop_instance_uid=uid,
                        status="not_analyzed",
                        reason=reason,
                        appearance_score=score,
                    )

    def _infer(self, group: list[_StudyWork]) -> None:
        """Logits and CAMs for one group of studies, in one model call, stored per study.

        Groups never split a study, so a failed call fails only the studies inside it.
        """
        live = [item for item in group if item.failure is None and item.prepared]
        if not live:
            return
        images = np.stack([p.tensor.numpy() for item in live for p in item.prepared.values()])
        try:
            result = self.engine.run(images)
        except InferenceError as exc:
            for item in live:
                for uid in item.prepared:
                    self._fail(item, uid, f"the model could not analyse the image: {exc}")
                item.prepared.clear()
            return
        index = 0
        for item in live:
            for uid in item.prepared:
                item.outputs[uid] = (result.logits[index], result.cams[index])
                index += 1

    def _groups(self, work: list[_StudyWork]) -> Iterator[list[_StudyWork]]:
        """Studies in groups of at most one model batch of in-scope images (a larger study
        forms a group of its own; the engine splits it into batches)."""
        batch: list[_StudyWork] = []
        size = 0
        for item in work:
            count = len(item.study.instances) - len(item.results)
            if batch and size + count > self.engine.max_batch:
                yield batch
                batch, size = [], 0
            batch.append(item)
            size += count
        if batch:
            yield batch

    def _interpreted(self, work: _StudyWork) -> ScreeningOutcome:
        try:
            return self._outcome(work)
        except INTERPRET_FAILURES as exc:
            reason = f"the model's output could not be interpreted ({type(exc).__name__}: {exc})"
            for uid in work.prepared:
                work.results[uid] = InstanceResult(
                    sop_instance_uid=uid, status="failed", reason=reason
                )
            work.failure = reason
            return self._failed(work)

    def _outcome(self, work: _StudyWork) -> ScreeningOutcome:
        if work.failure is not None:
            return self._failed(work)
        outputs = work.outputs
        uids = [uid for uid in work.prepared if uid in outputs]
        if not uids:
            instances = self._instances(work)
            return ScreeningOutcome(
                StudyResult(
                    study_instance_uid=work.study.study_instance_uid,
                    status="not_analyzed",
                    reason=_not_analysed_reason(instances),
                    model=self.model_ref,
                    instances=instances,
                )
            )
        manifest = self.package.manifest
        logits = np.stack([outputs[uid][0] for uid in uids])
        cams = np.stack([outputs[uid][1] for uid in uids])
        probs = probabilities(manifest, logits)
        analysed = []
        for index, uid in enumerate(uids):
            prepared = work.prepared[uid]
            work.results[uid] = InstanceResult(
                sop_instance_uid=uid, status="analyzed", appearance_score=prepared.appearance
            )
            analysed.append(
                AnalysedInstance(
                    image=prepared.image,
                    frame=0,
                    probabilities={
                        spec.code: float(probs[index, k])
                        for k, spec in enumerate(manifest.findings)
                    },
                    cams=cams[index],
                    appearance_score=prepared.appearance or 0.0,
                )
            )
        findings = study_findings(
            manifest,
            uids,
            probs,
            cams,
            [(a.image.info.rows, a.image.info.columns) for a in analysed],
        )
        result = StudyResult(
            study_instance_uid=work.study.study_instance_uid,
            status="analyzed",
            priority="urgent" if any(f.flagged for f in findings) else "routine",
            model=self.model_ref,
            findings=findings,
            instances=self._instances(work),
        )
        return ScreeningOutcome(result, tuple(analysed), self.package)

    def _failed(self, work: _StudyWork) -> ScreeningOutcome:
        for uid in work.prepared:
            work.results.setdefault(
                uid,
                InstanceResult(
                    sop_instance_uid=uid,
                    status="not_analyzed",
                    reason="not reported because another image of this study failed",
                ),
            )
        instances = self._instances(work)
        failed = sum(1 for r in instances if r.status == "failed")
        return ScreeningOutcome(
            StudyResult(
                study_instance_uid=work.study.study_instance_uid,
                status="failed",
                reason=f"{failed} of {len(instances)} images failed: {work.failure}",
                model=self.model_ref,
                instances=instances,
            )
        )

    @staticmethod
    def _instances(work: _StudyWork) -> list[InstanceResult]:
        return [work.results[i.uids.sop_instance_uid] for i in work.study.instances]


def _not_analysed_reason(instances: Sequence[InstanceResult]) -> str:
    reasons = list(dict.fromkeys(r.reason for r in instances if r.reason))
    if not reasons:
        return "the study holds no images"
    if len(instances) == 1:
        return reasons[0]
    return f"none of the {len(instances)} images is in scope: " + "; ".join(reasons)
