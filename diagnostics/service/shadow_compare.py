"""Active against shadow on radiologists' feedback: the evidence behind a promotion.

The truth per study and finding is the radiologist's newest verdict (`feedback` table): `agree`
confirms the flag of the result version they saw, `disagree` reverses it, `missed` says the
finding is present; a `comment` says nothing. On the studies that have both a verdict and a
shadow result, each model's flag is scored against that truth: agreement, sensitivity and
specificity with Wilson 95% intervals (the formula of `diagnostics.calibrate.wilson_interval`,
repeated here because that module pulls in torch, which the service must not load). Fewer than
`MIN_CASES` positives or negatives is said in words: an interval that wide decides nothing.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from diagnostics.errors import ConfigurationError
from diagnostics.package.registry import ModelRegistry
from diagnostics.results import StudyResult
from diagnostics.store import read_snapshot, store_exists

MIN_CASES = 10
"""Positives (for sensitivity) or negatives (for specificity) below which a number is flagged
as too few to judge by."""
_Z95 = 1.959963984540054


def wilson(successes: int, total: int) -> tuple[float, float] | None:
    """Wilson score 95% interval (as `diagnostics.calibrate.wilson_interval`); None without
    cases."""
    if total < 1:
        return None
    z = _Z95
    p = successes / total
    denominator = 1.0 + z * z / total
    centre = (p + z * z / (2 * total)) / denominator
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / denominator
    return max(0.0, min(p, centre - half)), min(1.0, max(p, centre + half))


@dataclass(frozen=True)
class Rate:
    """One proportion: successes of total, with its interval (None without cases)."""

    successes: int
    total: int
    value: float | None
    ci_95: tuple[float, float] | None

    @classmethod
    def of(cls, successes: int, total: int) -> Rate:
        value = successes / total if total else None
        return cls(successes, total, value, wilson(successes, total))

    def text(self) -> str:
        if self.value is None:
            return "n/a (0 cases)"
        low, high = self.ci_95 or (0.0, 0.0)
        return f"{self.value:.3f} [{low:.3f}, {high:.3f}] ({self.successes}/{self.total})"


@dataclass(frozen=True)
class Side:
    agreement: Rate
    sensitivity: Rate
    specificity: Rate


@dataclass(frozen=True)
class FindingAgreement:
    code: str
    studies: int
    positives: int
    negatives: int
    active: Side
    shadow: Side
    both_agree: Rate
    """How often the two models flag the same way (whatever the radiologist said)."""
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class ShadowComparison:
    active: str | None
    shadow: str | None
    feedback_studies: int
    """Studies with at least one verdict."""
    shadow_studies: int
    """Of those, studies with a shadow result (the ones compared)."""
    findings: list[FindingAgreement]
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [
            f"active: {self.active or '-'}   shadow: {self.shadow or '-'}",
            f"studies with feedback: {self.feedback_studies}; with a shadow result: "
            f"{self.shadow_studies}",
        ]
        out += [f"note: {n}" for n in self.notes]
        for f in self.findings:
            out.append(
                f"{f.code}: {f.studies} studies ({f.positives} positive, {f.negatives} negative)"
            )
            for name, side in (("active", f.active), ("shadow", f.shadow)):
                out.append(f"  {name:6} agreement   {side.agreement.text()}")
                out.append(f"  {name:6} sensitivity {side.sensitivity.text()}")
                out.append(f"  {name:6} specificity {side.specificity.text()}")
            out.append(f"  models agree with each other {f.both_agree.text()}")
            out += [f"  note: {n}" for n in f.notes]
        return out


def _truths(rows: list[dict[str, object]]) -> dict[tuple[str, str], tuple[int, str]]:
    """(study, code) → (result version, verdict) of the newest verdict that says something."""
    newest: dict[tuple[str, str], tuple[int, str]] = {}
    for row in rows:  # oldest first
        verdict = str(row["verdict"])
        if verdict == "comment":
            continue
        version = row["version"]
        newest[(str(row["study_instance_uid"]), str(row["code"]))] = (
            int(version) if isinstance(version, int | str) else 0,
            verdict,
        )
    return newest


def _flags(result: StudyResult) -> dict[str, bool]:
    return {f.code: f.flagged for f in result.findings} if result.status == "analyzed" else {}


def shadow_results(registry: ModelRegistry, key: str) -> dict[str, StudyResult]:
    """The shadow model's stored results by study (failures and unreadable files left out)."""
    results: dict[str, StudyResult] = {}
    folder = registry.shadow_results(key)
    if not folder.is_dir():
        return results
    for path in folder.glob("*.json"):
        try:
            record = json.loads(path.read_bytes())
            if "result" in record:
                result = StudyResult.model_validate(record["result"])
                results[result.study_instance_uid] = result
        except (OSError, ValueError):
            continue
    return results


def registry_records(registry: ModelRegistry, study: str) -> list[tuple[str, dict[str, object]]]:
    """(shadow version, stored record) of every shadow result kept for `study`."""
    root = registry.shadow_results("")
    found: list[tuple[str, dict[str, object]]] = []
    if not root.is_dir() or "/" in study or study.startswith("."):
        return found
    for folder in sorted(root.iterdir()):
        path = folder / f"{study}.json"
        try:
            found.append((folder.name, dict(json.loads(path.read_bytes()))))
        except (OSError, ValueError):
            continue
    return found


def compare_shadow(
    storage: Path, shadow: str | None = None, database: str | None = None
) -> ShadowComparison:
    """Active (the results radiologists saw) against the shadow model (default: the current
    one) on every study with feedback and a shadow result; the store in `database` when the
    nodes share PostgreSQL."""
    if not store_exists(storage, database):
        raise ConfigurationError(f"--storage {storage}: no intake database there")
    registry = ModelRegistry(storage)
    state = registry.state()
    key = state.find(shadow).key if shadow else state.shadow
    if key is None:
        raise ConfigurationError("no shadow model: name one, or set one with `models shadow`")
    theirs = shadow_results(registry, key)
    with read_snapshot(storage, database) as snapshot:
        truths = _truths(snapshot.feedback_rows() or [])
        studies = {study for study, _ in truths}
        seen: dict[tuple[str, int], dict[str, bool]] = {}
        for study in studies & set(theirs):
            for version, text in snapshot.results_of(study):
                seen[(study, version)] = _flags(StudyResult.model_validate_json(text))
    counts: dict[str, list[tuple[bool, bool, bool]]] = {}
    compared: set[str] = set()
    for (study, code), (version, verdict) in sorted(truths.items()):
        if study not in theirs:
            continue
        active_flags = seen.get((study, version), {})
        shadow_flags = _flags(theirs[study])
        if code not in active_flags or code not in shadow_flags:
            continue
        shown = active_flags[code]
        truth = True if verdict == "missed" else (shown if verdict == "agree" else not shown)
        counts.setdefault(code, []).append((truth, shown, shadow_flags[code]))
        compared.add(study)
    findings = [_finding(code, cases) for code, cases in sorted(counts.items())]
    notes = []
    if not findings:
        notes.append(
            "no study has both radiologist feedback and a shadow result yet: let the shadow "
            "model run while radiologists review"
        )
    return ShadowComparison(state.active, key, len(studies), len(compared), findings, notes)


def _side(cases: list[tuple[bool, bool]]) -> Side:
    positives = [flag for truth, flag in cases if truth]
    negatives = [flag for truth, flag in cases if not truth]
    return Side(
        agreement=Rate.of(sum(truth == flag for truth, flag in cases), len(cases)),
        sensitivity=Rate.of(sum(positives), len(positives)),
        specificity=Rate.of(sum(not f for f in negatives), len(negatives)),
    )


def _finding(code: str, cases: list[tuple[bool, bool, bool]]) -> FindingAgreement:
    positives = sum(truth for truth, _, _ in cases)
    negatives = len(cases) - positives
    notes = []
    if positives < MIN_CASES:
        notes.append(f"too few positives ({positives} < {MIN_CASES}) to judge sensitivity")
    if negatives < MIN_CASES:
        notes.append(f"too few negatives ({negatives} < {MIN_CASES}) to judge specificity")
    return FindingAgreement(
        code=code,
        studies=len(cases),
        positives=positives,
        negatives=negatives,
        active=_side([(t, a) for t, a, _ in cases]),
        shadow=_side([(t, s) for t, _, s in cases]),
        both_agree=Rate.of(sum(a == s for _, a, s in cases), len(cases)),
        notes=notes,
    )
