"""What a flag does to the study's priority: the package's on_flag and urgent_threshold."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest
from pydicom import dcmread

from diagnostics.errors import ModelPackageError
from diagnostics.package import Manifest, ModelPackage, write_package
from diagnostics.results import FindingResult
from diagnostics.screening import Screener
from diagnostics.screening.interpret import study_priority
from diagnostics.store.sqlite import SqliteStore
from tests.helpers.synth import SynthFactory


def _with(manifest: Manifest, **changes: Mapping[str, object]) -> Manifest:
    """The manifest with some findings' specs changed (code -> fields)."""
    specs = [f.model_copy(update=dict(changes.get(f.code, {}))) for f in manifest.findings]
    return Manifest.model_validate({**manifest.model_dump(), "findings": specs})


def _finding(manifest: Manifest, code: str, probability: float) -> FindingResult:
    threshold = manifest.operating_points[code].threshold
    return FindingResult(
        code=code,
        display=code,
        probability=probability,
        threshold=threshold,
        flagged=probability >= threshold,
        sop_instance_uid="1.2.3",
    )


def test_the_bundled_model_says_what_each_flag_does(bundled: ModelPackage) -> None:
    on_flag = {f.code: f.on_flag for f in bundled.manifest.findings}
    assert on_flag == {"nodule": "routine", "consolidation": "urgent", "cardiomegaly": "routine"}
    card = (bundled.path / "MODEL_CARD.md").read_text()
    assert "A flag makes the study" in card and "| routine |" in card and "| urgent |" in card


def test_priority_follows_each_rule(bundled: ModelPackage) -> None:
    m = bundled.manifest
    assert study_priority(m, [_finding(m, "nodule", 0.999)]) == "routine"  # flagged, routine
    assert study_priority(m, [_finding(m, "cardiomegaly", 0.999)]) == "routine"
    assert study_priority(m, [_finding(m, "consolidation", 0.999)]) == "urgent"
    low = m.operating_points["consolidation"].threshold / 2
    assert study_priority(m, [_finding(m, "consolidation", low)]) == "routine"  # not flagged
    above = (1 + m.operating_points["consolidation"].threshold) / 2
    gated = _with(m, consolidation={"urgent_threshold": above})
    flagged_below = (m.operating_points["consolidation"].threshold + above) / 2
    assert _finding(gated, "consolidation", flagged_below).flagged
    assert study_priority(gated, [_finding(gated, "consolidation", flagged_below)]) == "routine"
    assert study_priority(gated, [_finding(gated, "consolidation", above)]) == "urgent"
    every = _with(m, nodule={"on_flag": "urgent"})
    assert study_priority(every, [_finding(every, "nodule", 0.999)]) == "urgent"


def test_an_old_manifest_without_the_fields_loads_with_every_flag_urgent(
    bundled: ModelPackage,
) -> None:
    data = json.loads((bundled.path / "manifest.json").read_text())
    for spec in data["findings"]:
        del spec["on_flag"], spec["urgent_threshold"]
    old = Manifest.from_json(json.dumps(data))
    assert {f.on_flag for f in old.findings} == {"urgent"}
    assert all(f.urgent_threshold is None for f in old.findings)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"on_flag": "routine", "urgent_threshold": 0.9}, "only for on_flag 'urgent'"),
        ({"urgent_threshold": 0.0001}, "urgent_threshold 0.0001 is below its threshold"),
        ({"on_flag": "stat"}, "on_flag"),
    ],
)
def test_contradictory_priority_fields_are_refused(
    bundled: ModelPackage, change: dict[str, object], message: str
) -> None:
    data = json.loads((bundled.path / "manifest.json").read_text())
    data["findings"][1].update(change)
    with pytest.raises(ModelPackageError, match=message):
        Manifest.from_json(json.dumps(data))


def test_a_flagged_routine_finding_keeps_the_study_routine_on_the_worklist(
    bundled: ModelPackage, synth_factory: SynthFactory, tmp_path: Path
) -> None:
    routine = _with(
        bundled.manifest, **{f.code: {"on_flag": "routine"} for f in bundled.manifest.findings}
    )
    package = write_package(tmp_path / "routine", bundled.path / "model.onnx", routine)
    studies = synth_factory("on-flag", 8, 515, 512)
    outcomes = Screener.load(package).screen(studies.files).outcomes
    flagged = [o.result for o in outcomes if o.result.flagged]
    assert flagged, "no study was flagged; choose another seed"
    assert {r.priority for r in flagged} == {"routine"}
    store = SqliteStore(tmp_path / "store")
    result = flagged[0]
    uid = result.study_instance_uid
    path = next(
        p for p in studies.files if dcmread(p, stop_before_pixels=True).StudyInstanceUID == uid
    )
    store.receive(path.read_bytes(), "test")
    claim = store.claim_study(result.study_instance_uid)
    assert claim is not None and store.complete(claim, result) == 1
    _, rows = store.worklist()
    (row,) = rows
    assert row.flagged and row.priority == "routine" and row.effective_priority == "routine"
    store.close()
