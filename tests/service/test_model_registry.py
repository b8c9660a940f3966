"""The model registry through `diagnostics models` (no service): install copies and verifies,
`--model` adoption, shadow, the site-calibration rule on promotion (refused, then overridden,
both audited with who and the reason), rollback to the version before."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from diagnostics.errors import ModelPackageError
from diagnostics.package.registry import ModelRegistry
from diagnostics.service import model_admin
from diagnostics.store import open_store
from tests.helpers.cli import assert_refused, run_cli
from tests.helpers.packages import reversioned
from tests.helpers.synth import BUNDLED


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("packages")
    return {
        "plain": reversioned(root / "plain", "1.1.0", threshold_scale=0.5),
        "site": reversioned(root / "site", "1.1.0+site.b", calibrated=True),
    }


def _models(storage: Path, *args: str | Path) -> dict[str, object]:
    result = run_cli("models", *args, "--storage", storage)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_install_shadow_promote_rollback(tmp_path: Path, packages: dict[str, Path]) -> None:
    """The CLI for the steps a person takes; the shared `model_admin` calls for the rest (each
    CLI start costs seconds on a loaded machine)."""
    storage = tmp_path / "storage"
    registry = ModelRegistry(storage)
    state = registry.adopt(BUNDLED, "serve --model")  # what the service does at its first start
    assert state.active == "cxr-demo-1.0.0"
    assert registry.adopt(BUNDLED, "serve --model").history == state.history  # idempotent

    installed = _models(storage, "install", packages["plain"])
    assert installed == {"installed": "cxr-demo-1.1.0", "site_calibrated": False}
    copy = storage / "models" / "cxr-demo-1.1.0"
    assert (copy / "model.onnx").is_file() and (copy / "manifest.json").is_file()
    store = open_store(storage)
    model_admin.install(store, registry, packages["site"], "test")
    assert model_admin.shadow(store, registry, "1.1.0", "test").key == "cxr-demo-1.1.0"

    refused = run_cli("models", "promote", "--storage", storage)
    assert "no site calibration" in assert_refused(refused, "ModelPackageError")
    assert registry.state().active == "cxr-demo-1.0.0"
    promoted = _models(storage, "promote", "--override-calibration", "pilot on ward 3")
    assert promoted == {"active": "cxr-demo-1.1.0", "previous": "cxr-demo-1.0.0"}
    assert registry.state().shadow is None  # the shadow became the active one

    entry, _ = model_admin.promote(store, registry, "1.1.0+site.b", "test")  # calibrated: no reason
    assert entry.key == "cxr-demo-1.1.0+site.b"
    assert model_admin.rollback(store, registry, "test")[0].key == "cxr-demo-1.1.0"
    assert model_admin.rollback(store, registry, "test")[0].key == "cxr-demo-1.0.0"
    with pytest.raises(ModelPackageError, match="nothing to roll back"):
        model_admin.rollback(store, registry, "test")

    listed = _models(storage, "list")
    actions = [c["action"] for c in listed["history"]]  # type: ignore[attr-defined]
    assert actions == [
        "install", "activate", "install", "install", "shadow",
        "promote", "promote", "rollback", "rollback",
    ]  # fmt: skip

    refusal = store.audit_entries("model_promote_refused")[0]
    assert refusal["outcome"] == 4 and str(refusal["actor"]).startswith("cli")
    override = store.audit_entries("model_promoted")[0]
    assert override["outcome"] == 0 and str(override["actor"]).startswith("cli")
    assert override["detail"]["override_calibration"] == "pilot on ward 3"  # type: ignore[index]
    assert len(store.audit_entries("model_rolled_back")) == 2
    assert store.audit_entries("model_rollback_refused")[0]["outcome"] == 4
    store.close()


def test_an_installed_version_with_another_model_is_refused(
    tmp_path: Path, packages: dict[str, Path]
) -> None:
    registry = ModelRegistry(tmp_path)
    registry.install(packages["plain"], "test")
    other = tmp_path / "other"
    reversioned(other, "1.1.0")
    (other / "model.onnx").write_bytes((other / "model.onnx").read_bytes() + b"")
    # same name and version, same model: a no-op; a changed copy at the source is not trusted
    assert registry.install(other, "test")[1] is False
    installed = registry.path_of("cxr-demo-1.1.0") / "model.onnx"
    installed.write_bytes(installed.read_bytes()[:-10])
    with pytest.raises(ModelPackageError, match="sha256"):
        registry.load("cxr-demo-1.1.0")


def test_unknown_versions_are_named(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.adopt(BUNDLED, "test")
    with pytest.raises(
        ModelPackageError, match=re.escape("no installed model '9.9.9'; installed: cxr-demo")
    ):
        registry.set_shadow("9.9.9", "test")
    with pytest.raises(ModelPackageError, match="cannot shadow itself"):
        registry.set_shadow("1.0.0", "test")


def test_verdicts_become_truths_and_rates() -> None:
    """`agree` keeps the flag the radiologist saw, `disagree` reverses it, `missed` is positive,
    a comment says nothing; the newest verdict counts. Rates carry Wilson intervals."""
    from diagnostics.service.shadow_compare import Rate, _finding, _truths, wilson

    rows = [
        {"study_instance_uid": "1", "version": 1, "code": "nodule", "verdict": "agree"},
        {"study_instance_uid": "1", "version": 1, "code": "nodule", "verdict": "disagree"},
        {"study_instance_uid": "2", "version": 2, "code": "nodule", "verdict": "missed"},
        {"study_instance_uid": "3", "version": 1, "code": "nodule", "verdict": "comment"},
    ]
    assert _truths(rows) == {("1", "nodule"): (1, "disagree"), ("2", "nodule"): (2, "missed")}
    # (truth, active flag, shadow flag): the shadow finds the positive the active missed
    finding = _finding("nodule", [(True, False, True), (False, False, False), (False, True, True)])
    assert (finding.positives, finding.negatives) == (1, 2)
    assert finding.active.sensitivity.value == 0.0 and finding.shadow.sensitivity.value == 1.0
    assert finding.active.specificity.successes == 1 and finding.shadow.specificity.total == 2
    assert finding.both_agree == Rate.of(2, 3)
    assert len(finding.notes) == 2  # too few positives and negatives
    low, high = wilson(8, 10) or (0.0, 0.0)
    assert 0.49 < low < 0.8 < high < 0.95
    assert wilson(0, 0) is None
    from diagnostics.calibrate import wilson_interval  # the formula repeated without torch

    assert all(wilson(k, 17) == wilson_interval(k, 17) for k in range(18))
