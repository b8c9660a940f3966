"""Model packages with deliberately broken graphs, for fault injection in screening tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from diagnostics.package import ModelPackage, write_package

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
