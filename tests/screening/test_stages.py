"""Each screening stage on its own: typed values in, new values out, refusals settled.

The end-to-end behaviour is in test_pipeline.py; here each stage function is called directly,
with a fake engine where the model would only slow the test down.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

import diagnostics.screening.prepare as prepare_module
from diagnostics.appearance import AppearanceProfile
from diagnostics.dicom.grouping import Study
from diagnostics.errors import CorruptDicomError, InferenceError
from diagnostics.package import ModelPackage
from diagnostics.screening.engine import EngineOutput
from diagnostics.screening.gate import gate_appearance, gate_headers
from diagnostics.screening.infer import infer
from diagnostics.screening.ingest import read_headers
from diagnostics.screening.interpret import NOT_REPORTED, interpret
from diagnostics.screening.pipeline import model_groups
from diagnostics.screening.prepare import prepare
from diagnostics.screening.stages import (
    Gated,
    ImageOutput,
    Inferred,
    Prepared,
    SourceInstance,
)
from tests.helpers.synth import SynthStudies


class FakeEngine:
    """Engine-shaped: answers every image with logits equal to its position in the call."""

    def __init__(self, package: ModelPackage, fail: bool = False) -> None:
        manifest = package.manifest
        self.package = package
        self.input_shape = (manifest.input.channels, manifest.input.height, manifest.input.width)
        self.max_batch = 16
        self.fail = fail
        self.calls: list[int] = []

    def run(self, images: np.ndarray) -> EngineOutput:
        self.calls.append(len(images))
        if self.fail:
            raise InferenceError("the model produced NaN or infinite outputs")
        k = len(self.package.manifest.findings)
        logits = np.repeat(np.arange(len(images), dtype=np.float32)[:, None], k, axis=1)
        return EngineOutput(logits, np.zeros((len(images), k, 4, 4), dtype=np.float32))


def _studies(synth: SynthStudies, count: int) -> list[Study[SourceInstance]]:
    studies, rejected = read_headers(synth.files[:count])
    assert not rejected and len(studies) == count
    return studies


def _merged(studies: list[Study[SourceInstance]]) -> Study[SourceInstance]:
    """The instances of several synthetic studies as one study (two series or more)."""
    first = studies[0]
    series = {key: s for study in studies for key, s in study.series.items()}
    return Study(first.study_instance_uid, first.patient_id, series)


@pytest.fixture(scope="module")
def gated(synth_studies: SynthStudies, bundled: ModelPackage) -> list[Gated]:
    return [gate_headers(study, bundled.manifest.scope) for study in _studies(synth_studies, 3)]


@pytest.fixture(scope="module")
def prepared(gated: list[Gated], bundled: ModelPackage) -> list[Prepared]:
    return [prepare(g, bundled.manifest.preprocessing) for g in gated]


def test_header_gate_settles_refusals_and_admits_the_rest(
    synth_studies: SynthStudies, bundled: ModelPackage
) -> None:
    study = _studies(synth_studies, 1)[0]
    scope = bundled.manifest.scope.model_copy(update={"modalities": ["CT"]})
    refused = gate_headers(study, scope)
    assert refused.admitted == ()
    [result] = refused.settled.values()
    assert result.status == "not_analyzed"
    assert (
        result.reason is not None
        and "outside this model's scope: it reads CT images" in result.reason
    )
    admitted = gate_headers(study, bundled.manifest.scope)
    assert admitted.admitted == tuple(study.instances) and not admitted.settled


def test_prepare_makes_one_model_input_per_admitted_instance(
    prepared: list[Prepared], bundled: ModelPackage
) -> None:
    spec = bundled.manifest.input
    for study in prepared:
        assert study.failure is None and not study.settled
        [image] = study.images
        assert image.uid == study.study.instances[0].uids.sop_instance_uid
        assert tuple(image.tensor.shape) == (spec.channels, spec.height, spec.width)
        assert image.appearance is None  # the appearance gate has not looked yet


def test_a_decode_failure_fails_the_study_but_the_rest_is_prepared(
    synth_studies: SynthStudies, bundled: ModelPackage, monkeypatch: pytest.MonkeyPatch
) -> None:
    study = _merged(_studies(synth_studies, 3))
    broken = study.instances[1].uids.sop_instance_uid
    real = prepare_module.read_instance

    def read(source: object, limits: object = None, min_size: object = None) -> object:
        if str(source) == study.instances[1].label:
            raise CorruptDicomError("pixel data truncated")
        return real(source, limits, min_size)  # type: ignore[arg-type]

    monkeypatch.setattr(prepare_module, "read_instance", read)
    gated = gate_headers(study, bundled.manifest.scope)
    result = prepare(gated, bundled.manifest.preprocessing)
    assert result.failure == "the image could not be read: pixel data truncated"
    assert result.settled[broken].status == "failed"
    assert [i.uid for i in result.images] == [
        i.uids.sop_instance_uid for i in study.instances if i.uids.sop_instance_uid != broken
    ]
    assert not gated.settled  # the input is not touched


def test_a_preprocess_failure_is_named(
    gated: list[Gated], bundled: ModelPackage, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("spatial transform failed")

    monkeypatch.setattr(prepare_module, "preprocess_image", broken)
    result = prepare(gated[0], bundled.manifest.preprocessing)
    assert result.images == ()
    assert result.failure == "the image could not be preprocessed: spatial transform failed"


def test_appearance_gate_scores_and_refuses(
    prepared: list[Prepared], bundled: ModelPackage
) -> None:
    scope = bundled.manifest.scope
    assert gate_appearance(prepared[0], None, scope) is prepared[0]
    profile = bundled.manifest.appearance
    assert profile is not None
    passed = gate_appearance(prepared[0], profile, scope)
    [image] = passed.images
    assert image.appearance is not None and 0 < image.appearance < 1.0
    strict = AppearanceProfile(**{**profile.model_dump(), "threshold": 1e-3})
    refused = gate_appearance(prepared[0], strict, scope)
    assert refused.images == () and refused.failure is None
    [result] = refused.settled.values()
    assert result.status == "not_analyzed" and result.appearance_score is not None
    assert result.appearance_score > 1.0
    assert "does not look like the DX or CR images of the CHEST" in str(result.reason)
    assert prepared[0].images[0].appearance is None  # the input is not touched


def test_infer_keeps_each_study_its_own_outputs(
    prepared: list[Prepared], bundled: ModelPackage
) -> None:
    failed = dataclasses.replace(prepared[1], failure="the image could not be read: x")
    group = [prepared[0], failed, prepared[2]]
    engine = FakeEngine(bundled)
    inferred = infer(group, engine)
    assert engine.calls == [2]  # one call, the failed study left out
    assert [i.study for i in inferred] == [p.study for p in group]
    assert float(inferred[0].outputs[0].logits[0]) == 0.0
    assert float(inferred[2].outputs[0].logits[0]) == 1.0
    assert inferred[1].outputs == () and inferred[1].failure == failed.failure
    assert inferred[1].images == failed.images


def test_a_failed_model_call_fails_every_image_of_the_group(
    prepared: list[Prepared], bundled: ModelPackage
) -> None:
    inferred = infer(prepared, FakeEngine(bundled, fail=True))
    for study in inferred:
        assert study.images == () and study.outputs == ()
        assert study.failure is not None and "could not analyse the image" in study.failure
        assert {r.status for r in study.settled.values()} == {"failed"}


def test_interpret_reports_analysed_only_when_the_model_ran(
    prepared: list[Prepared], bundled: ModelPackage
) -> None:
    [ran] = infer([prepared[0]], FakeEngine(bundled))
    not_run = Inferred(prepared[1].study, prepared[1].images, (), prepared[1].settled, "broken")
    analysed = interpret(ran, bundled)
    assert analysed.result.status == "analyzed" and analysed.package is bundled
    assert [a.image.uids.sop_instance_uid for a in analysed.analysed] == [ran.images[0].uid]
    failed = interpret(not_run, bundled).result
    assert failed.status == "failed" and failed.findings == []
    assert failed.instances[0].status == "not_analyzed"
    assert failed.instances[0].reason == NOT_REPORTED


def test_outputs_that_do_not_match_the_images_fail_the_study(
    prepared: list[Prepared], bundled: ModelPackage
) -> None:
    k = len(bundled.manifest.findings)
    output = ImageOutput(np.zeros(k, np.float32), np.zeros((k, 4, 4), np.float32))
    study = prepared[0]
    for outputs in [(), (output, output)]:
        result = interpret(
            Inferred(study.study, study.images, outputs, study.settled), bundled
        ).result
        assert result.status == "failed", outputs
        assert "could not be interpreted" in str(result.reason)
        assert [i.status for i in result.instances] == ["failed"]


def test_a_study_with_nothing_admitted_is_not_analysed(bundled: ModelPackage) -> None:
    empty = Inferred(Study("1.2.3", "P1"), (), (), {})
    result = interpret(empty, bundled).result
    assert result.status == "not_analyzed" and result.reason == "the study holds no images"


def test_stage_values_are_frozen(prepared: list[Prepared]) -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        prepared[0].failure = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        prepared[0].images[0].tensor = torch.zeros(1)  # type: ignore[misc]


def test_groups_never_split_a_study(
    gated: list[Gated], synth_studies: SynthStudies, bundled: ModelPackage
) -> None:
    big = gate_headers(_merged(_studies(synth_studies, 3)), bundled.manifest.scope)
    sizes = [[len(g.admitted) for g in group] for group in model_groups([*gated, big], 2)]
    assert sizes == [[1, 1], [1], [3]]
