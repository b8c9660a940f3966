"""`manifest.json`: the schema of what serving must know that the graph cannot.

Finding codes, preprocessing, calibration, operating points, input scope, the appearance
profile, training data summary and metrics (docs/architecture.md, "Model package"). Parsing is
strict: unknown fields, duplicate JSON keys and cross-field contradictions are refused with the
field path, so a manifest built for another contract never reaches serving. This module is the
package's base: loading, writing and the card import it, never the other way round.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Annotated, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import (
    Field,
    JsonValue,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from diagnostics.appearance import AppearanceProfile
from diagnostics.errors import ModelPackageError
from diagnostics.package.reference import ReferenceDistributions
from diagnostics.preprocess import PreprocessSpec
from diagnostics.strict import StrictModel

MODEL_FILE = "model.onnx"
MANIFEST_FILE = "manifest.json"
CARD_FILE = "MODEL_CARD.md"
SCHEMA_VERSION = 1
INPUT_NAME = "image"
OUTPUT_NAMES = ("logits", "cam")
_SEMVER = (
    r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)"
    r"(-[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
)
_DICOM_CODE_STRING = r"^[A-Z0-9_ ]{1,16}$"  # CS value representation, as the gate compares them

CodeStrings = Annotated[list[str], Field(min_length=1)]


class CodedConcept(StrictModel):
    """A code from a terminology (SNOMED CT "SCT", "RADLEX", ...), as DICOM SR writes it."""

    value: str = Field(min_length=1, max_length=64)
    scheme: str = Field(pattern=r"^[A-Z0-9][A-Z0-9_.-]{0,15}$")
    """A DICOM Coding Scheme Designator: upper case, at most 16 characters."""
    meaning: str = Field(min_length=1, max_length=64)
    """DICOM Code Meaning is LO (64 characters), so longer meanings could not be written."""


class FindingSpec(StrictModel):
    """One output of the model: its code (the key everywhere else) and what it means."""

    code: str = Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=32)
    display: str = Field(min_length=1, max_length=64)
    concept: CodedConcept
    on_flag: Literal["urgent", "routine"] = "urgent"
    """What a flag does to the study's priority: an incidental nodule is flagged but the study
    stays routine; a consolidation raises it to urgent. Older manifests lack it: urgent."""
    urgent_threshold: float | None = Field(default=None, ge=0.0, le=1.0, allow_inf_nan=False)
    """With on_flag "urgent": the probability (at least the operating point's threshold) from
    which a flag raises the study to urgent; None: every flag does."""

    @model_validator(mode="after")
    def _check_priority(self) -> FindingSpec:
        if self.on_flag == "routine" and self.urgent_threshold is not None:
            raise ValueError(
                f"finding {self.code!r}: urgent_threshold is only for on_flag 'urgent'"
            )
        return self

    def raises_priority(self, probability: float, flagged: bool) -> bool:
        """Whether this finding, so scored and flagged, makes the study urgent."""
        if not flagged or self.on_flag != "urgent":
            return False
        return self.urgent_threshold is None or probability >= self.urgent_threshold


class Calibration(StrictModel):
    """Maps a raw logit to a probability: `sigmoid(a * logit + b)`.

    `temperature` is the special case b = 0 (a = 1/T); `none` is a = 1, b = 0. The slope must be
    positive: otherwise calibration would flatten or invert the ranking the operating point was
    chosen on.
    """

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


class OperatingPoint(StrictModel):
    """The probability threshold that flags a finding, and what it achieved where it was chosen."""

    threshold: float = Field(ge=0.0, le=1.0)
    target_sensitivity: float = Field(ge=0.0, le=1.0)
    sensitivity: float = Field(ge=0.0, le=1.0)
    specificity: float = Field(ge=0.0, le=1.0)
    chosen_on: str = Field(min_length=1)


class InputScope(StrictModel):
    """What the model was trained for; the gate refuses everything else as not analysed.

    Values are DICOM code strings (Modality, Body Part Examined, View Position, Photometric
    Interpretation) exactly as they appear in the header. Empty lists are refused rather than
    read as "anything", so a scope can never be silently wide open.
    """

    modalities: CodeStrings
    body_parts: CodeStrings
    views: CodeStrings
    photometric_interpretations: CodeStrings
    min_rows: int = Field(ge=1)
    min_columns: int = Field(ge=1)
    body_part_words: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list
    )
    """Other wording sites put in Body Part Examined for these body parts (THORAX, CHEST_PA, a
    local language), matched ignoring case, spaces, underscores and apostrophe variants. The
    package decides this, not the code: what counts as a chest is part of what was validated."""
    body_part_codes: list[Annotated[str, Field(min_length=1, max_length=16)]] = Field(
        default_factory=list
    )
    """Anatomic Region Sequence code values (SNOMED CT) for these body parts, used when Body Part
    Examined is missing or empty."""
    view_codes: list[Annotated[str, Field(min_length=1, max_length=16)]] = Field(
        default_factory=list
    )
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


class DataSummary(StrictModel):
    """One data split, in the numbers a reader of the model card needs to judge it."""

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


class TrainingSummary(StrictModel):
    """The splits; `test` must be given, as null when there was no held-out test set."""

    train: DataSummary
    validation: DataSummary
    test: DataSummary | None


class InputTensor(StrictModel):
    """The ONNX input the preprocessing produces: `image`, float32 [N, channels, height, width]."""

    name: Literal["image"] = "image"
    channels: int = Field(ge=1)
    height: int = Field(ge=1)
    width: int = Field(ge=1)


Interval = tuple[float, float]


class SiteFindingResult(StrictModel):
    """One finding's numbers on a site's labelled studies, at the operating point derived there."""

    positives: int = Field(ge=0)
    negatives: int = Field(ge=0)
    unknown: int = Field(ge=0)
    """Studies whose label was -1 or empty, left out of every number here."""
    threshold: float = Field(ge=0.0, le=1.0)
    sensitivity: float = Field(ge=0.0, le=1.0)
    sensitivity_ci_95: Interval
    specificity: float = Field(ge=0.0, le=1.0)
    specificity_ci_95: Interval

    @model_validator(mode="after")
    def _check_intervals(self) -> SiteFindingResult:
        for name in ("sensitivity", "specificity"):
            low, high = getattr(self, f"{name}_ci_95")
            if not 0.0 <= low <= getattr(self, name) <= high <= 1.0:
                raise ValueError(f"{name}_ci_95 [{low}, {high}] must contain {name} in [0, 1]")
        return self


class SiteCalibration(StrictModel):
    """Where and on what a package's calibration and operating points were re-derived locally
    (`diagnostics calibrate`): a site can show its thresholds rest on its own studies."""

    site: str = Field(min_length=1, max_length=64)
    date: str
    """ISO 8601 date (YYYY-MM-DD) of the calibration."""
    previous_version: str = Field(pattern=_SEMVER, max_length=64)
    """The package version that was re-calibrated."""
    data: str = Field(min_length=1)
    """The labelled folder's name (never a patient detail)."""
    studies: int = Field(ge=1)
    target_sensitivity: float = Field(gt=0.0, le=1.0)
    ci_method: Literal["wilson"] = "wilson"
    findings: dict[str, SiteFindingResult]
    """Re-calibrated findings, by code."""
    kept: list[str] = Field(default_factory=list)
    """Findings the data did not label: their calibration and operating point are the previous
    version's."""

    @field_validator("date")
    @classmethod
    def _check_date(cls, value: str) -> str:
        if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value):
            raise ValueError(f"{value!r} is not an ISO 8601 date (YYYY-MM-DD)")
        datetime.strptime(value, "%Y-%m-%d")
        return value


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


class Manifest(StrictModel):
    """`manifest.json`: everything serving needs to use `model.onnx` exactly as it was validated.

    Cross-field rules are field validators (fields validate in declaration order), so an error
    names the field to fix, e.g. `calibration: no calibration for finding 'nodule'`.
    """

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
    """Free-form: per finding code (auroc, auroc_ci_95, ...) and overall; see the card."""
    library_versions: dict[str, str]
    intended_use: str = Field(min_length=1)
    limitations: list[str]
    appearance: AppearanceProfile | None = None
    """Optional image-level scope check; packages without one rely on the header scope alone."""
    precision: Literal["fp32", "int8"] = "fp32"
    """Numeric precision of the graph's weights and activations: an `int8` package is a variant
    of an fp32 one, accepted only after an accuracy check on held-out studies
    (`diagnostics.precision`), whose numbers are in `metrics["precision_check"]`."""
    # -- calibrate --
    site_calibration: SiteCalibration | None = None
    """Set by `diagnostics calibrate`: the site and data the operating points were derived on."""
    # -- monitoring --
    reference_distributions: ReferenceDistributions | None = None
    """Histograms of calibrated probabilities and appearance scores on the calibration data,
    the reference drift is judged against; older packages have none ("no reference")."""

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
        if info.field_name == "operating_points" and codes is not None:
            for spec in info.data["findings"]:
                point = value[spec.code]
                if spec.urgent_threshold is not None and spec.urgent_threshold < point.threshold:
                    raise ValueError(
                        f"{spec.code}: the finding's urgent_threshold {spec.urgent_threshold} is "
                        f"below its threshold {point.threshold} (a study is raised to urgent only "
                        "by a flag)"
                    )
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

    @field_validator("site_calibration")
    @classmethod
    def _check_site_codes(
        cls, site: SiteCalibration | None, info: ValidationInfo
    ) -> SiteCalibration | None:
        codes = _codes(info)
        if site is None or codes is None:
            return site
        calibrated, kept = set(site.findings), set(site.kept)
        if calibrated & kept:
            raise ValueError(f"{sorted(calibrated & kept)} are both re-calibrated and kept")
        _check_keys("site calibration", calibrated | kept, codes)
        if not calibrated:
            raise ValueError("no finding was re-calibrated")
        return site

    @field_validator("reference_distributions")
    @classmethod
    def _check_reference_codes(
        cls, reference: ReferenceDistributions | None, info: ValidationInfo
    ) -> ReferenceDistributions | None:
        codes = _codes(info)
        if reference is not None and codes is not None:
            _check_keys("reference distribution", set(reference.findings), codes)
        return reference

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
