"""Model packages: a written package loads back equal; every broken one is refused, saying why."""

from __future__ import annotations

import json
import math
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from diagnostics.errors import ModelPackageError
from diagnostics.package import (
    CARD_FILE,
    MANIFEST_FILE,
    MODEL_FILE,
    Calibration,
    Manifest,
    ModelPackage,
    library_versions,
    load_package,
    sha256_file,
    write_package,
)
from diagnostics.package import card as model_card

CODES = ("nodule", "consolidation", "cardiomegaly")
CONCEPTS = {
    "nodule": ("786838002", "Pulmonary nodule", "Lung nodule"),
    "consolidation": ("95436008", "Lung consolidation", "Consolidation"),
    "cardiomegaly": ("8186001", "Cardiomegaly", "Cardiomegaly"),
}
SIZE = 32


class TinyCamNet(nn.Module):
    """Smallest model with the contract's outputs: a strided conv gives CAMs, their mean logits."""

    def __init__(self, channels: int = 1, findings: int = len(CODES)) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, findings, kernel_size=4, stride=4)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cam = self.conv(image)
        return cam.mean(dim=(2, 3)), cam


def export(
    path: Path, *, outputs: tuple[str, str] = ("logits", "cam"), dynamic: bool = True
) -> Path:
    axes = {"image": {0: "N"}, outputs[0]: {0: "N"}, outputs[1]: {0: "N"}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            TinyCamNet().eval(),
            (torch.zeros(2, 1, SIZE, SIZE),),
            str(path),
            dynamo=False,
            input_names=["image"],
            output_names=list(outputs),
            dynamic_axes=axes if dynamic else None,
        )
    return path


def _split(description: str, studies: int, seed: int | None = 7) -> dict[str, Any]:
    positives = {code: studies // (i + 3) for i, code in enumerate(CODES)}
    return {
        "description": description,
        "studies": studies,
        "patients": studies,
        "positives": positives,
        "seed": seed,
    }


def example_fields() -> dict[str, Any]:
    """A complete manifest minus what write_package fills in (sha256, created, versions)."""
    return {
        "name": "cxr-demo",
        "version": "1.0.0",
        "architecture": "tiny-cam",
        "input": {"name": "image", "channels": 1, "height": SIZE, "width": SIZE},
        "outputs": ["logits", "cam"],
        "findings": [
            {
                "code": code,
                "display": display,
                "concept": {"value": value, "scheme": "SCT", "meaning": meaning},
            }
            for code, (value, meaning, display) in CONCEPTS.items()
        ],
        "preprocessing": {"size": [SIZE, SIZE], "channels": 1},
        "calibration": {
            "nodule": {"method": "platt", "a": 0.8, "b": -0.3, "fitted_on": "synth-val seed 2"},
            "consolidation": {"method": "temperature", "a": 0.5, "fitted_on": "synth-val seed 2"},
            "cardiomegaly": {"method": "none", "fitted_on": "synth-val seed 2"},
        },
        "operating_points": {
            code: {
                "threshold": 0.4,
                "target_sensitivity": 0.9,
                "sensitivity": 0.91,
                "specificity": 0.8,
                "chosen_on": "synth-val seed 2",
            }
            for code in CODES
        },
        "scope": {
            "modalities": ["DX", "CR"],
            "body_parts": ["CHEST"],
            "views": ["PA", "AP"],
            "photometric_interpretations": ["MONOCHROME1", "MONOCHROME2"],
            "min_rows": 1024,
            "min_columns": 1024,
        },
        "training": {
            "train": _split("Synthetic chest phantoms (diagnostics synth)", 2000, seed=1),
            "validation": _split("Synthetic chest phantoms (diagnostics synth)", 500, seed=2),
            "test": _split("Synthetic chest phantoms (diagnostics synth)", 500, seed=3),
        },
        "metrics": {
            "nodule": {
                "auroc": 0.91,
                "auroc_ci_95": [0.88, 0.94],
                "sensitivity_at_90_specificity": 0.72,
                "sensitivity_at_95_specificity": 0.61,
                "ece": 0.031,
                "nodule_sensitivity_by_size": {"<6 mm": 0.41, "6-10 mm": 0.7, ">10 mm": 0.93},
            },
            "consolidation": {"auroc": 0.95, "auroc_ci_95": [0.93, 0.97], "ece": 0.02},
            "cardiomegaly": {"auroc": 0.99, "n_test_positives": 102},
            "overall": {"macro_auroc": 0.95},
        },
        "intended_use": "Demonstrate the pipeline end to end on synthetic radiographs.",
        "limitations": ["Never validated on real patients.", "Adult PA/AP chest only."],
    }


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The ONNX variants, exported once for the module (the slow part of these tests)."""
    root = tmp_path_factory.mktemp("onnx")
    return {
        "good": export(root / "good.onnx"),
        "renamed": export(root / "renamed.onnx", outputs=("scores", "cam")),
        "static": export(root / "static.onnx", dynamic=False),
    }


@pytest.fixture(scope="module")
def published(models: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_package(
        tmp_path_factory.mktemp("pkg") / "cxr-demo", models["good"], example_fields()
    ).path


@pytest.fixture
def package(published: Path, tmp_path: Path) -> Path:
    """A private copy of a good package, for a test to break."""
    return Path(shutil.copytree(published, tmp_path / "pkg"))


def _edit_manifest(package: Path, edit: Callable[[dict[str, Any]], object]) -> None:
    path = package / MANIFEST_FILE
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def _refused(path: Path, *fragments: str) -> str:
    with pytest.raises(ModelPackageError) as caught:
        load_package(path)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message
    return message


def _install_model(package: Path, model: Path) -> None:
    """Swap in another graph with a matching sha256, so only the ONNX check can object."""
    shutil.copyfile(model, package / MODEL_FILE)
    digest = sha256_file(package / MODEL_FILE)
    _edit_manifest(package, lambda data: data.update(sha256=digest))


# the good path


def test_written_package_loads_back_equal(published: Path, models: dict[str, Path]) -> None:
    loaded = load_package(published)
    written = Manifest.from_json((published / MANIFEST_FILE).read_text())
    assert loaded.manifest == written
    assert loaded.finding_codes == CODES
    assert loaded.onnx_path.read_bytes() == models["good"].read_bytes()
    assert loaded.manifest.sha256 == sha256_file(models["good"])
    assert sorted(p.name for p in published.iterdir()) == [CARD_FILE, MANIFEST_FILE, MODEL_FILE]
    assert [p.name for p in published.parent.iterdir()] == ["cxr-demo"]  # no staging left


def test_write_fills_in_what_the_caller_cannot_know(published: Path) -> None:
    manifest = load_package(published).manifest
    assert manifest.schema_version == 1
    assert manifest.created.endswith("+00:00")
    assert manifest.library_versions == library_versions()


def test_written_card_is_the_rendered_manifest(published: Path) -> None:
    manifest = load_package(published).manifest
    assert (published / CARD_FILE).read_text() == model_card.render(manifest)


def test_manifest_file_is_sorted_indented_json(published: Path) -> None:
    text = (published / MANIFEST_FILE).read_text()
    data = json.loads(text)
    assert text == json.dumps(data, sort_keys=True, indent=2) + "\n"


def test_manifest_json_round_trip(published: Path) -> None:
    manifest = load_package(published).manifest
    assert Manifest.from_json(manifest.to_json()) == manifest


def test_write_accepts_a_manifest(published: Path, models: dict[str, Path], tmp_path: Path) -> None:
    original = load_package(published).manifest
    again = write_package(tmp_path / "again", models["good"], original)
    assert again.manifest == original


def test_a_package_is_made_only_by_loading_or_writing(published: Path, tmp_path: Path) -> None:
    loaded = load_package(published)
    with pytest.raises(TypeError, match="only by load_package or write_package"):
        ModelPackage(path=tmp_path, manifest=loaded.manifest)  # nothing here was verified
    assert loaded == load_package(published)  # the token takes no part in equality


def test_nan_metrics_are_written_as_null(models: dict[str, Path], tmp_path: Path) -> None:
    fields = example_fields()
    fields["metrics"]["cardiomegaly"]["auroc"] = math.nan
    written = write_package(tmp_path / "nan", models["good"], fields)
    assert written.manifest.metrics["cardiomegaly"] == {"auroc": None, "n_test_positives": 102}


def test_library_versions_name_this_project() -> None:
    versions = library_versions()
    assert {"diagnostics", "numpy", "onnx", "torch"} <= set(versions)


def test_calibration_is_a_sigmoid_of_an_affine_logit() -> None:
    cal = Calibration(method="platt", a=2.0, b=-1.0, fitted_on="val")
    logits = np.array([-800.0, 0.0, 0.5, 800.0])
    expected = [0.0, 1 / (1 + math.exp(1.0)), 0.5, 1.0]
    np.testing.assert_allclose(cal.probability(logits), expected, atol=1e-12)


def test_calibration_refuses_a_bias_for_temperature_scaling() -> None:
    with pytest.raises(ValueError, match="has b = 0"):
        Calibration(method="temperature", a=0.5, b=0.1, fitted_on="val")


# refused packages


def test_missing_folder_is_refused(tmp_path: Path) -> None:
    _refused(tmp_path / "nowhere", "not a folder")


def test_missing_manifest_is_refused(package: Path) -> None:
    (package / MANIFEST_FILE).unlink()
    _refused(package, "manifest.json: missing")


def test_missing_model_is_refused(package: Path) -> None:
    (package / MODEL_FILE).unlink()
    _refused(package, "model.onnx: missing")


def test_invalid_json_is_refused(package: Path) -> None:
    path = package / MANIFEST_FILE
    path.write_text(path.read_text()[:-10])
    _refused(package, "manifest.json: not valid JSON (line")


def test_duplicate_json_keys_are_refused(package: Path) -> None:
    path = package / MANIFEST_FILE
    path.write_text(path.read_text().replace('"name":', '"name": "other",\n  "name":', 1))
    _refused(package, "duplicate key(s) ['name']")


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    """An edit that sets one dotted field path (list indices as numbers) of the manifest."""

    def edit(data: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = data
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (_set("colour", "red"), "colour: Extra inputs are not permitted"),
        (_set("findings.0.colour", "red"), "findings.0.colour: Extra inputs"),
        (
            lambda d: d["calibration"].pop("nodule"),
            "calibration: no calibration for finding 'nodule'",
        ),
        (_set("operating_points.effusion", {}), "operating_points.effusion.threshold: Field"),
        (_set("input.channels", 3), "preprocessing: channels 1 but input.channels is 3"),
        (_set("input.height", 64), "preprocessing: size [32, 32] but input is 64 x 32"),
        (_set("findings.0.code", "Nodule"), "findings.0.code: String should match pattern"),
        (_set("findings.1.code", "nodule"), "findings: finding codes must be unique"),
        (_set("outputs", ["logits"]), "outputs: must be ['logits', 'cam']"),
        (_set("schema_version", 2), "schema_version: Input should be 1"),
        (
            _set("created", "2025-01-01T00:00:00"),
            "created: '2025-01-01T00:00:00' has no UTC offset",
        ),
        (_set("input.width", "32"), "input.width: Input should be a valid integer"),
        (_set("scope.views", []), "scope.views: List should have at least 1 item"),
        (_set("training.test.positives.effusion", 1), "training: test.positives: ['effusion']"),
        (
            _set("calibration.nodule.a", -1.0),
            "calibration.nodule.a: Input should be greater than 0",
        ),
        (_set("sha256", "ABC"), "sha256: String should match pattern"),
    ],
)
def test_schema_violation_is_refused_naming_the_field(
    package: Path, edit: Callable[[dict[str, Any]], object], expected: str
) -> None:
    _edit_manifest(package, edit)
    message = _refused(package, f"{MANIFEST_FILE}: ")
    assert expected in message


def test_tampered_model_is_refused(package: Path) -> None:
    model = package / MODEL_FILE
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    _refused(package, "model.onnx: sha256 is", "tampered or corrupt")


def test_wrong_output_names_are_refused(package: Path, models: dict[str, Path]) -> None:
    _install_model(package, models["renamed"])
    _refused(package, "outputs are ['cam', 'scores'], expected exactly ['cam', 'logits']")


def test_static_batch_size_is_refused(package: Path, models: dict[str, Path]) -> None:
    _install_model(package, models["static"])
    _refused(package, "image has a fixed batch size 2")


def test_graph_disagreeing_with_manifest_is_refused(package: Path) -> None:
    def drop_last_finding(data: dict[str, Any]) -> None:
        data["findings"].pop()
        for key in ("calibration", "operating_points"):
            data[key].pop("cardiomegaly")
        for split in data["training"].values():
            split["positives"].pop("cardiomegaly")

    _edit_manifest(package, drop_last_finding)
    _refused(package, "logits axis 1 is 3 but the manifest implies 2", "cam axis 1 is 3")


def test_not_onnx_is_refused(package: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x80\x04not a model")  # a pickle header: never unpickled, just refused
    _install_model(package, junk)
    _refused(package, "not a readable ONNX model")


def test_check_onnx_false_still_checks_the_hash(package: Path, models: dict[str, Path]) -> None:
    _install_model(package, models["renamed"])
    assert load_package(package, check_onnx=False).finding_codes == CODES
    (package / MODEL_FILE).write_bytes(b"")
    with pytest.raises(ModelPackageError, match="tampered or corrupt"):
        load_package(package, check_onnx=False)


# writing refuses and leaves nothing behind


def test_write_refuses_a_bad_graph_and_leaves_nothing(
    models: dict[str, Path], tmp_path: Path
) -> None:
    with pytest.raises(ModelPackageError, match="outputs are"):
        write_package(tmp_path / "pkg", models["renamed"], example_fields())
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_a_missing_model(tmp_path: Path) -> None:
    with pytest.raises(ModelPackageError, match="no ONNX model file here"):
        write_package(tmp_path / "pkg", tmp_path / "absent.onnx", example_fields())


def test_write_refuses_bad_fields_naming_them(models: dict[str, Path], tmp_path: Path) -> None:
    fields = example_fields()
    del fields["operating_points"]["nodule"]
    with pytest.raises(ModelPackageError, match="operating point for finding 'nodule'"):
        write_package(tmp_path / "pkg", models["good"], fields)
    assert list(tmp_path.iterdir()) == []


def test_write_refuses_to_replace_unless_asked(
    published: Path, models: dict[str, Path], tmp_path: Path
) -> None:
    target = Path(shutil.copytree(published, tmp_path / "pkg"))
    fields = example_fields() | {"version": "1.0.1"}
    with pytest.raises(ModelPackageError, match="already exists"):
        write_package(target, models["good"], fields)
    replaced = write_package(target, models["good"], fields, overwrite=True)
    assert load_package(target).manifest.version == replaced.manifest.version == "1.0.1"
    assert [p.name for p in tmp_path.iterdir()] == ["pkg"]
