"""The model package: the only form in which a model reaches serving.

A package is a folder with `model.onnx`, `manifest.json` and `MODEL_CARD.md`
(docs/architecture.md, "Model package"). The manifest says everything serving must know that
the graph cannot: finding codes, preprocessing, calibration, operating points, input scope.
Loading verifies the sha256 of `model.onnx` against the manifest and the manifest against its
schema, so a package that was edited, truncated or built for another contract is refused
before it can produce a result.
Nothing here unpickles: ONNX is protobuf and the manifest is JSON.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
import onnx
from google.protobuf.message import DecodeError  # type: ignore[import-untyped, unused-ignore]
from pydantic import (
    BaseModel,
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from diagnostics import model_card
from diagnostics.appearance import AppearanceProfile
from diagnostics.durable import publish_folder, staging_folder
from diagnostics.errors import ModelPackageError
from diagnostics.preprocess import PreprocessSpec
from diagnostics.strict import STRICT

logger = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
CARD_FILE = "MODEL_CARD.md"
SCHEMA_VERSION = 1
INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "cam")
_MAX_MANIFEST_BYTES = 16 * 1024 * 1024
_SEMVER = (
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
_DICOM_CODE_STRING = r"^[A-Z0-9_ ]{1,16}$"  # CS value representation, as the gate compares them
_DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "torch": ("torch",),
    "monai": ("monai",),
    "onnx": ("onnx",),
    "onnxruntime": ("onnxruntime", "onnxruntime-gpu"),
    "numpy": ("numpy",),
    "pydicom": ("pydicom",),
    "diagnostics": ("radiology-diagnostics",),
}

CodeStrings = Annotated[list[str], Field(min_length=1)]


class CodedConcept(BaseModel):
    """A code from a terminology (SNOMED CT "SCT", "RADLEX", ...), as DICOM SR writes it."""

    model_config = STRICT

    value: str = Field(min_length=1, max_length=64)
    scheme: str = Field(pattern=r"^[A-Z0-9][A-Z0-9_.-]{0,15}$")
    """A DICOM Coding Scheme Designator: upper case, at most 16 characters."""
    meaning: str = Field(min_length=1, max_length=64)
    """DICOM Code Meaning is LO (64 characters), so longer meanings could not be written."""


class FindingSpec(BaseModel):
    """One output of the model: its code (the key everywhere else) and what it means."""

    model_config = STRICT

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=32)
    display: str = Field(min_length=1, max_length=64)
    concept: CodedConcept


class Calibration(BaseModel):
    """Maps a raw logit to a probability: `sigmoid(a * logit + b)`.

    `temperature` is the special case b = 0 (a = 1/T); `none` is a = 1, b = 0. The slope must be
    positive: otherwise calibration would flatten or invert the ranking the operating point was
    chosen on.
    """

    model_config = STRICT

    method: Literal["temperature", "platt", "none"]
    a: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)
    b: float = Field(default=0.0, allow_inf_nan=False)
    fitted_on: str = Field(min_length=1)
    """Which data set the parameters were fitted on (never the test set)."""

    @model_validator(mode="after")
    def _check_method(self) -> Calibration:
        if self.method != "platt" and self.b != 0.0:
            raise ValueError(f"method {self.method!r} has b = 0 (got b = {self.b})")
        if self.method == "none" and self.a != 1.0:
            raise ValueError(f"method 'none' has a = 1 (got a = {self.a})")
        return self

    def probability(self, logits: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Calibrated probabilities; tanh form, so large logits do not overflow."""
        z = self.a * np.asarray(logits, dtype=np.float64) + self.b
        return np.asarray(0.5 * (1.0 + np.tanh(0.5 * z)), dtype=np.float64)


class OperatingPoint(BaseModel):
    """The probability threshold that flags a finding, and what it achieved where it was chosen."""

    model_config = STRICT

    threshold: float = Field(ge=0.0, le=1.0)
    target_sensitivity: float = Field(ge=0.0, le=1.0)
    sensitivity: float = Field(ge=0.0, le=1.0)
    specificity: float = Field(ge=0.0, le=1.0)
    chosen_on: str = Field(min_length=1)


class InputScope(BaseModel):
    """What the model was trained for; the gate refuses everything else as not analysed.

    Values are DICOM code strings (Modality, Body Part Examined, View Position, Photometric
    Interpretation) exactly as they appear in the header. Empty lists are refused rather than
    read as "anything", so a scope can never be silently wide open.
    """

    model_config = STRICT

    modalities: CodeStrings
    body_parts: CodeStrings
    views: CodeStrings
    photometric_interpretations: CodeStrings
    min_rows: int = Field(ge=1)
    min_columns: int = Field(ge=1)
    body_part_words: list[Annotated[str, Field(min_length=1, max_length=64)]] = []
    """Other wording sites put in Body Part Examined for these body parts (THORAX, CHEST_PA, a
    local language), matched ignoring case, spaces, underscores and apostrophe variants. The
    package decides this, not the code: what counts as a chest is part of what was validated."""
    body_part_codes: list[Annotated[str, Field(min_length=1, max_length=16)]] = []
    """Anatomic Region Sequence code values (SNOMED CT) for these body parts, used when Body Part
    Examined is missing or empty."""
    view_codes: list[Annotated[str, Field(min_length=1, max_length=16)]] = []
    """View Code Sequence code values (SNOMED CT, CID 4010) for these views, used when View
    Position is missing or empty."""

    @field_validator("modalities", "body_parts", "views", "photometric_interpretations")
    @classmethod
    def _check_code_strings(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if not re.fullmatch(_DICOM_CODE_STRING, v)]
        if bad:
            raise ValueError(
                f"{bad} are not DICOM code strings (upper case, at most 16 characters)"
            )
        return values


class DataSummary(BaseModel):
    """One data split, in the numbers a reader of the model card needs to judge it."""

    model_config = STRICT

    description: str = Field(min_length=1)
    studies: int = Field(ge=0)
    patients: int = Field(ge=0)
    positives: dict[str, int]
    """Positive studies per finding code."""
    seed: int | None = None

    @model_validator(mode="after")
    def _check_counts(self) -> DataSummary:
        if self.patients > self.studies:
            raise ValueError(f"{self.patients} patients cannot have only {self.studies} studies")
        bad = {code: n for code, n in self.positives.items() if not 0 <= n <= self.studies}
        if bad:
            raise ValueError(f"positives {bad} must be between 0 and studies ({self.studies})")
        return self


class TrainingSummary(BaseModel):
    """The splits; `test` must be given, as null when there was no held-out test set."""

    model_config = STRICT

    train: DataSummary
    validation: DataSummary
    test: DataSummary | None


class InputTensor(BaseModel):
    """The ONNX input the preprocessing produces: `image`, float32 [N, channels, height, width]."""

    model_config = STRICT

    name: Literal["image"] = "image"
    channels: int = Field(ge=1)
    height: int = Field(ge=1)
    width: int = Field(ge=1)


def _codes(info: ValidationInfo) -> list[str] | None:
    """Finding codes validated so far, or None when `findings` itself failed (reported there)."""
    findings = info.data.get("findings")
    return None if findings is None else [f.code for f in findings]


def _check_keys(what: str, keys: set[str], codes: list[str]) -> None:
    missing = [c for c in codes if c not in keys]
    extra = sorted(keys - set(codes))
    problems = [f"no {what} for finding {c!r}" for c in missing]
    problems += [f"{what} for {c!r}, which is not a finding code" for c in extra]
    if problems:
        raise ValueError("; ".join(problems))


class Manifest(BaseModel):
    """`manifest.json`: everything serving needs to use `model.onnx` exactly as it was validated.

    Cross-field rules are field validators (fields validate in declaration order), so an error
    names the field to fix, e.g. `calibration: no calibration for finding 'nodule'`.
    """

    model_config = STRICT

    schema_version: Literal[1]
    name: str = Field(pattern=r"^[a-z0-9]+(-[a-z0-9]+)*$", max_length=64)
    version: str = Field(pattern=_SEMVER, max_length=64)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    """Of `model.onnx`, lower-case hex."""
    created: str
    """ISO 8601 date and time with a UTC offset."""
    architecture: str = Field(min_length=1)
    """The model registry name the graph was built from."""
    findings: Annotated[list[FindingSpec], Field(min_length=1)]
    """In the order of the `logits` and `cam` channels."""
    input: InputTensor
    outputs: list[str]
    preprocessing: PreprocessSpec
    calibration: dict[str, Calibration]
    operating_points: dict[str, OperatingPoint]
    scope: InputScope
    training: TrainingSummary
    metrics: dict[str, JsonValue]
    """Free-form: per finding code (auroc, auroc_ci_95, ...) and overall; see model_card."""
    library_versions: dict[str, str]
    intended_use: str = Field(min_length=1)
    limitations: list[str]
    appearance: AppearanceProfile | None = None
    """Optional image-level scope check; packages without one rely on the header scope alone."""

    @field_validator("created")
    @classmethod
    def _check_created(cls, value: str) -> str:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an ISO 8601 date and time") from None
        if moment.tzinfo is None:
            raise ValueError(f"{value!r} has no UTC offset (write e.g. '+00:00')")
        return value

    @field_validator("findings")
    @classmethod
    def _check_unique_codes(cls, findings: list[FindingSpec]) -> list[FindingSpec]:
        codes = [f.code for f in findings]
        repeated = sorted({c for c in codes if codes.count(c) > 1})
        if repeated:
            raise ValueError(f"finding codes must be unique; repeated: {repeated}")
        return findings

    @field_validator("outputs")
    @classmethod
    def _check_outputs(cls, outputs: list[str]) -> list[str]:
        if tuple(outputs) != OUTPUT_NAMES:
            raise ValueError(f"must be {list(OUTPUT_NAMES)} (got {outputs})")
        return outputs

    @field_validator("preprocessing")
    @classmethod
    def _check_matches_input(cls, spec: PreprocessSpec, info: ValidationInfo) -> PreprocessSpec:
        tensor = info.data.get("input")
        if tensor is None:
            return spec
        if spec.channels != tensor.channels:
            raise ValueError(f"channels {spec.channels} but input.channels is {tensor.channels}")
        if tuple(spec.size) != (tensor.height, tensor.width):
            raise ValueError(
                f"size {list(spec.size)} but input is {tensor.height} x {tensor.width} "
                "(height x width)"
            )
        return spec

    @field_validator("calibration", "operating_points")
    @classmethod
    def _check_per_finding(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        codes = _codes(info)
        if codes is not None:
            what = "calibration" if info.field_name == "calibration" else "operating point"
            _check_keys(what, set(value), codes)
        return value

    @field_validator("training")
    @classmethod
    def _check_positive_codes(
        cls, training: TrainingSummary, info: ValidationInfo
    ) -> TrainingSummary:
        codes = _codes(info)
        if codes is None:
            return training
        for split in ("train", "validation", "test"):
            summary: DataSummary | None = getattr(training, split)
            unknown = sorted(set(summary.positives) - set(codes)) if summary else []
            if unknown:
                raise ValueError(f"{split}.positives: {unknown} are not finding codes")
        return training

    @property
    def finding_codes(self) -> tuple[str, ...]:
        return tuple(f.code for f in self.findings)

    @classmethod
    def from_json(cls, text: str | bytes, *, source: str = MANIFEST_FILE) -> Manifest:
        """Parse strictly; errors are `ModelPackageError`s naming `source` and the field path.

        Duplicate JSON keys are refused: the last one would silently win otherwise, so two
        `threshold`s could hide one from a reviewer of the file.
        """
        try:
            json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except json.JSONDecodeError as exc:
            raise ModelPackageError(
                f"{source}: not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
            ) from exc
        except ValueError as exc:  # duplicate keys, bad encoding
            raise ModelPackageError(f"{source}: {exc}") from exc
        try:
            return cls.model_validate_json(text, strict=True)
        except ValidationError as exc:
            raise ModelPackageError(f"{source}: {describe_errors(exc)}") from exc

    def to_json(self) -> str:
        """Sorted keys and indentation, so two exports diff cleanly; NaN metrics become null."""
        data = json.loads(self.model_dump_json())
        return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise ValueError(f"duplicate key(s) {repeated} in a JSON object")
    return dict(pairs)


def describe_errors(exc: ValidationError, limit: int = 5) -> str:
    """`field.path: message` for each error, so the message says where to look in the file."""
    errors = exc.errors()
    parts = []
    for error in errors[:limit]:
        where = ".".join(str(part) for part in error["loc"]) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        value = error.get("input")
        if isinstance(value, str | int | float) and len(repr(value)) <= 40:
            message += f" (got {value!r})"
        parts.append(f"{where}: {message}")
    if len(errors) > limit:
        parts.append(f"and {len(errors) - limit} more")
    return "; ".join(parts)


@dataclass(frozen=True)
class ModelPackage:
    """A verified package: construct it with `load_package`, which checks what it claims."""

    path: Path
    manifest: Manifest

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
    return ModelPackage(path=root, manifest=manifest)


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


ManifestFields = Mapping[str, Any] | Manifest


def write_package(
    out_dir: Path,
    onnx_model_path: Path,
    manifest_fields: ManifestFields,
    *,
    overwrite: bool = False,
) -> ModelPackage:
    """Build a package atomically: staged in a sibling folder, verified, then renamed into place.

    `sha256` is always computed here (any given value is replaced). From a mapping,
    `schema_version`, `created` (now, UTC) and `library_versions` (this environment) are filled
    in when absent. A crash or a refused package leaves no folder at `out_dir`.
    """
    out_dir, source = Path(out_dir), Path(onnx_model_path)
    if not source.is_file():
        raise ModelPackageError(f"{source}: no ONNX model file here to package")
    _check_destination(out_dir, overwrite=overwrite)
    with staging_folder(out_dir) as staging:
        staging.chmod(0o755)  # mkdtemp makes it private; a package is meant to be read by services
        shutil.copyfile(source, staging / MODEL_FILE)
        text = _complete_manifest(manifest_fields, sha256_file(staging / MODEL_FILE)).to_json()
        (staging / MANIFEST_FILE).write_text(text, encoding="utf-8")
        written = Manifest.from_json(text)  # the card shows the file, key order included
        (staging / CARD_FILE).write_text(model_card.render(written), encoding="utf-8")
        verified = load_package(staging)
        try:
            publish_folder(staging, out_dir, replace=overwrite)
        except OSError as exc:
            raise ModelPackageError(f"{out_dir}: could not publish the package ({exc})") from exc
    return ModelPackage(path=out_dir, manifest=verified.manifest)


def _check_destination(out_dir: Path, *, overwrite: bool) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise ModelPackageError(f"{out_dir}: exists and is not a folder")
    if out_dir.is_dir() and any(out_dir.iterdir()) and not overwrite:
        raise ModelPackageError(
            f"{out_dir}: already exists and is not empty; choose a new folder (packages are "
            "immutable once published) or pass overwrite=True"
        )


def _complete_manifest(fields: ManifestFields, digest: str) -> Manifest:
    data: dict[str, Any] = fields.model_dump() if isinstance(fields, Manifest) else dict(fields)
    data["sha256"] = digest
    data.setdefault("schema_version", SCHEMA_VERSION)
    data.setdefault("created", datetime.now(UTC).isoformat(timespec="seconds"))
    data.setdefault("library_versions", library_versions())
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        raise ModelPackageError(f"manifest: {describe_errors(exc)}") from exc


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a model's numbers; those not installed are omitted."""
    versions = {}
    for name, distributions in _DISTRIBUTIONS.items():
        for distribution in distributions:
            try:
                versions[name] = metadata.version(distribution)
                break
            except metadata.PackageNotFoundError:
                continue
    return versions
