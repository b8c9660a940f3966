"""Loading a model package: the only way to get a verified `ModelPackage`.

A package is a folder with `model.onnx`, `manifest.json` and `MODEL_CARD.md`
(docs/architecture.md, "Model package"). Loading verifies the sha256 of `model.onnx` against the
manifest, the manifest against its schema and the graph's inputs and outputs against both, so a
package that was edited, truncated or built for another contract is refused before it can
produce a result. Nothing here unpickles: ONNX is protobuf and the manifest is JSON.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]

from diagnostics.errors import ModelPackageError
from diagnostics.package.manifest import (
    CARD_FILE,
    INPUT_NAME,
    MANIFEST_FILE,
    MODEL_FILE,
    OUTPUT_NAMES,
    Manifest,
)

logger = logging.getLogger(__name__)

_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_VERIFIED = object()
"""Held by this module alone: `ModelPackage` refuses to be built without it."""


@dataclass(frozen=True)
class ModelPackage:
    """A verified package: only `load_package` makes one, after checking what it claims
    (`write_package` returns the one it loaded from its staging folder, moved into place).

    Serving trusts a `ModelPackage` (sha256, schema, graph) without checking again, so building
    one from a path and a manifest by hand would skip exactly the checks that refuse a tampered
    model: the constructor refuses any caller that does not hold this module's private token.
    """

    path: Path
    manifest: Manifest
    _verified: object = field(default=None, repr=False, compare=False, kw_only=True)

    def __post_init__(self) -> None:
        if self._verified is not _VERIFIED:
            raise TypeError(
                "a ModelPackage is made only by load_package or write_package, which verify it"
            )

    @property
    def onnx_path(self) -> Path:
        return self.path / MODEL_FILE

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    @property
    def card_path(self) -> Path:
        return self.path / CARD_FILE

    @property
    def finding_codes(self) -> tuple[str, ...]:
        return self.manifest.finding_codes


def sha256_file(path: Path) -> str:
    """Streamed, so a large model is never held in memory just to be hashed."""
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _require_file(path: Path) -> Path:
    if not path.is_file():
        raise ModelPackageError(f"{path}: missing; a model package needs {path.name}")
    return path


def read_manifest(path: Path) -> Manifest:
    """Read and validate one `manifest.json`."""
    _require_file(path)
    if path.stat().st_size > _MAX_MANIFEST_BYTES:
        raise ModelPackageError(f"{path}: larger than {_MAX_MANIFEST_BYTES} bytes; not a manifest")
    return Manifest.from_json(path.read_bytes(), source=str(path))


def load_package(path: str | Path, *, check_onnx: bool = True) -> ModelPackage:
    """Load and verify a package; any problem raises `ModelPackageError` and nothing is returned.

    `check_onnx=False` skips parsing the graph (the sha256 is always checked), for callers that
    will build an inference session from the file immediately anyway.
    """
    root = Path(path)
    if not root.is_dir():
        raise ModelPackageError(
            f"{root}: not a folder; a model package is a folder with {MODEL_FILE}"
        )
    manifest = read_manifest(root / MANIFEST_FILE)
    model_path = _require_file(root / MODEL_FILE)
    digest = sha256_file(model_path)
    if digest != manifest.sha256:
        raise ModelPackageError(
            f"{model_path}: sha256 is {digest} but the manifest says {manifest.sha256}; the model "
            "file is tampered or corrupt. Copy the package again from its source or re-export it."
        )
    if check_onnx:
        check_onnx_graph(model_path, manifest)
    if not (root / CARD_FILE).is_file():
        logger.warning("%s: no %s; the package is usable but undocumented", root, CARD_FILE)
    return ModelPackage(path=root, manifest=manifest, _verified=_VERIFIED)


def check_onnx_graph(model_path: Path, manifest: Manifest) -> None:
    """Refuse a graph whose inputs/outputs do not match the contract or the manifest."""
    try:
        model = onnx.load(str(model_path), load_external_data=False)
    except (DecodeError, OSError, ValueError) as exc:
        raise ModelPackageError(f"{model_path}: not a readable ONNX model ({exc})") from exc
    problems = _external_data_problems(model.graph) + _io_problems(model.graph, manifest)
    if problems:
        raise ModelPackageError(
            f"{model_path}: does not match the model package contract: " + "; ".join(problems)
        )


def _external_data_problems(graph: onnx.GraphProto) -> list[str]:
    """External tensors would escape the sha256, which covers `model.onnx` alone."""
    external = [t.name for t in graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    if external:
        return [
            f"{len(external)} weight tensor(s) stored outside model.onnx (e.g. {external[0]!r})"
        ]
    return []


def _io_problems(graph: onnx.GraphProto, manifest: Manifest) -> list[str]:
    weights = {t.name for t in graph.initializer}  # older IRs list weights as inputs too
    inputs = {v.name: v for v in graph.input if v.name not in weights}
    outputs = {v.name: v for v in graph.output}
    problems = []
    if set(inputs) != {INPUT_NAME}:
        problems.append(f"inputs are {sorted(inputs)}, expected exactly ['{INPUT_NAME}']")
    if set(outputs) != set(OUTPUT_NAMES):
        problems.append(f"outputs are {sorted(outputs)}, expected exactly {sorted(OUTPUT_NAMES)}")
    k = len(manifest.findings)
    tensor = manifest.input
    expected: dict[str, list[int | None]] = {
        INPUT_NAME: [None, tensor.channels, tensor.height, tensor.width],
        "logits": [None, k],
        "cam": [None, k, None, None],
    }
    for name, value in {**inputs, **outputs}.items():
        if name in expected:
            problems += _tensor_problems(value, expected[name], dynamic_batch=name == INPUT_NAME)
    return problems


def _tensor_problems(
    value: onnx.ValueInfoProto, expected: list[int | None], *, dynamic_batch: bool
) -> list[str]:
    """float32, the expected rank, and static sizes that agree with the manifest where given."""
    name = value.name
    if not value.type.HasField("tensor_type"):
        return [f"{name} is not a tensor"]
    tensor = value.type.tensor_type
    if tensor.elem_type != onnx.TensorProto.FLOAT:
        return [f"{name} is {onnx.TensorProto.DataType.Name(tensor.elem_type)}, expected FLOAT"]
    if not tensor.HasField("shape"):
        return [f"{name} declares no shape, expected rank {len(expected)}"]
    dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim]
    if len(dims) != len(expected):
        return [f"{name} has rank {len(dims)}, expected {len(expected)}"]
    problems = []
    if dynamic_batch and dims[0] is not None:
        problems.append(f"{name} has a fixed batch size {dims[0]}; export it with a dynamic axis 0")
    for axis, (got, want) in enumerate(zip(dims, expected, strict=True)):
        if axis > 0 and got is not None and want is not None and got != want:
            problems.append(f"{name} axis {axis} is {got} but the manifest implies {want}")
    return problems
