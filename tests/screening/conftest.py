"""Shared inputs for screening tests: the bundled model, fresh synthetic studies, and packages
with deliberately broken graphs for fault injection."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from diagnostics.appearance import fit_profile
from diagnostics.dicom import read_instance
from diagnostics.package import ModelPackage, load_package, write_package
from diagnostics.preprocess import preprocess_image
from diagnostics.synth import SynthConfig, generate
from diagnostics.synth.study import StudyTruth

BUNDLED = Path(__file__).resolve().parents[2] / "models" / "cxr-demo"
FIELD_OF_VIEW_MM = 409.6
"""The bundled model's training images: 512 pixels of 0.8 mm."""
SEED = 4242
"""Never used for the bundled model's training or test data (101, 202)."""


@pytest.fixture(scope="session")
def bundled() -> ModelPackage:
    return load_package(BUNDLED)


@pytest.fixture(scope="session")
def synth(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[StudyTruth]]:
    """12 studies at 384 pixels over the training field of view: half the decode cost."""
    out = tmp_path_factory.mktemp("screening-synth")
    config = SynthConfig(rows=384, columns=384, spacing_mm=FIELD_OF_VIEW_MM / 384)
    return out, generate(out, 12, SEED, config)


def study_files(synth: tuple[Path, list[StudyTruth]]) -> list[Path]:
    folder, truths = synth
    return [folder / t.file for t in truths]


@pytest.fixture(scope="session")
def profiled(bundled: ModelPackage, tmp_path_factory: pytest.TempPathFactory) -> ModelPackage:
    """The bundled model with an appearance profile fitted here on 40 other synthetic studies."""
    out = tmp_path_factory.mktemp("profile-synth")
    config = SynthConfig(rows=256, columns=256, spacing_mm=FIELD_OF_VIEW_MM / 256)
    truths = generate(out, 40, SEED + 1, config)
    spec = bundled.manifest.preprocessing
    tensors = [preprocess_image(read_instance(out / t.file), spec) for t in truths]
    profile = fit_profile(
        tensors[:28], tensors[28:], fitted_on="40 test phantoms", threshold_chosen_on="12 of them"
    )
    manifest = bundled.manifest.model_copy(update={"appearance": profile})
    return write_package(tmp_path_factory.mktemp("profiled") / "pkg", bundled.onnx_path, manifest)


GraphEdit = Callable[[onnx.GraphProto], None]


def _reroute(
    graph: onnx.GraphProto, output: str, make: Callable[[str], list[onnx.NodeProto]]
) -> None:
    """Rename the producer of graph output `output` and append nodes that recreate it."""
    raw = f"{output}_raw"
    for node in graph.node:
        for i, name in enumerate(node.output):
            if name == output:
                node.output[i] = raw
    graph.node.extend(make(raw))


def nan_logits(graph: onnx.GraphProto) -> None:
    nan = numpy_helper.from_array(np.array(np.nan, dtype=np.float32), "nan_constant")
    graph.initializer.append(nan)
    _reroute(
        graph, "logits", lambda raw: [helper.make_node("Mul", [raw, "nan_constant"], ["logits"])]
    )


def out_of_range_gather(graph: onnx.GraphProto) -> None:
    """Valid at load time, fails at run time: an index past the last finding."""
    index = numpy_helper.from_array(np.array([0, 1, 7], dtype=np.int64), "bad_index")
    graph.initializer.append(index)
    _reroute(
        graph,
        "logits",
        lambda raw: [helper.make_node("Gather", [raw, "bad_index"], ["logits"], axis=1)],
    )


def broken_package(bundled: ModelPackage, folder: Path, edit: GraphEdit) -> ModelPackage:
    """A correctly signed package around a graph edited by `edit` (the faults a bad export or a
    runtime defect produce, without writing a broken exporter)."""
    model = onnx.load(str(bundled.onnx_path))
    edit(model.graph)
    path = folder / "edited.onnx"
    onnx.save(model, str(path))
    return write_package(folder / "pkg", path, bundled.manifest)
