"""The model package: the only form in which a model reaches serving.

A package is a folder with `model.onnx`, `manifest.json` and `MODEL_CARD.md`
(docs/architecture.md, "Model package"). The modules import in one direction:
`manifest` (the schema) ← `load` (verify, the only source of a `ModelPackage`) and `card` (the
manifest rendered for people) ← `write` (stage, verify by loading, publish). The public names are
re-exported here, so callers import from `diagnostics.package` and need not know the split.
"""

from __future__ import annotations

from diagnostics.package.load import (
    ModelPackage,
    check_onnx_graph,
    load_package,
    read_manifest,
    sha256_file,
)
from diagnostics.package.manifest import (
    CARD_FILE,
    INPUT_NAME,
    MANIFEST_FILE,
    MODEL_FILE,
    OUTPUT_NAMES,
    SCHEMA_VERSION,
    Calibration,
    CodedConcept,
    CodeStrings,
    DataSummary,
    FindingSpec,
    InputScope,
    InputTensor,
    Manifest,
    OperatingPoint,
    TrainingSummary,
    describe_errors,
)
from diagnostics.package.write import ManifestFields, library_versions, write_package

__all__ = [
    "CARD_FILE",
    "INPUT_NAME",
    "MANIFEST_FILE",
    "MODEL_FILE",
    "OUTPUT_NAMES",
    "SCHEMA_VERSION",
    "Calibration",
    "CodeStrings",
    "CodedConcept",
    "DataSummary",
    "FindingSpec",
    "InputScope",
    "InputTensor",
    "Manifest",
    "ManifestFields",
    "ModelPackage",
    "OperatingPoint",
    "TrainingSummary",
    "check_onnx_graph",
    "describe_errors",
    "library_versions",
    "load_package",
    "read_manifest",
    "sha256_file",
    "write_package",
]
