"""Label QA before training: what a labelled folder holds, and what would make training wrong.

`diagnostics labels check FOLDER` prints this report, and `diagnostics train` prints it before
any work starts, so that a spreadsheet that does not match the PACS export, a finding nobody
labelled positive, or a patient on both sides of a split is seen in seconds, not after an hour.

Blocking (training refuses): no study matched a row; a finding with no positive or no negative
label (nothing to learn, no AUROC). Everything else is a warning: rows without files, studies
without rows, unreadable files, repeated or ambiguous keys, patients in two splits, very few
positives. The report holds counts, CSV line numbers and header statistics only, never an
identifier.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from diagnostics.datasets.exported import is_research_export
from diagnostics.datasets.labelled import LABELS_FILE, MatchedFolder, match_labelled_folder
from diagnostics.datasets.records import UNKNOWN_LABEL
from diagnostics.errors import DatasetError
from diagnostics.findings import KnownFinding
from diagnostics.train.data import split_by_patient

FEW_POSITIVES = 10
"""Fewer positives than this is a warning: the operating point would rest on a handful."""
SHOWN_LINES = 10


@dataclass
class FindingCounts:
    positives: int
    negatives: int
    unknown: int

    @property
    def prevalence(self) -> float | None:
        known = self.positives + self.negatives
        return self.positives / known if known else None


@dataclass
class LabelReport:
    folder: str
    key: str
    rows: int
    matched: int
    rows_without_files: int
    rows_without_files_lines: list[int]
    studies_without_rows: int
    ambiguous_rows: int
    unreadable_files: dict[str, int]
    patients: int
    patients_in_two_splits: int
    findings: dict[str, FindingCounts]
    image_rows: dict[str, float]
    image_columns: dict[str, float]
    views: dict[str, int]
    body_parts: dict[str, int]
    modalities: dict[str, int]
    blocking: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.blocking

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for code, counts in self.findings.items():
            data["findings"][code]["prevalence"] = counts.prevalence
        data["ok"] = self.ok
        return data


def labelled_codes(folder: Path, catalogue: dict[str, KnownFinding]) -> list[str]:
    """The catalogue's findings that the folder's labels.csv has a column for (a research
    export: those with a verdict in feedback.jsonl)."""
    path = folder / LABELS_FILE
    if not path.is_file() and is_research_export(folder):
        text = (folder / "feedback.jsonl").read_text(encoding="utf-8")
        return [code for code in catalogue if f'"code": "{code}"' in text]
    if not path.is_file():
        raise DatasetError(f"{path}: no labels file (expected {LABELS_FILE} beside the studies)")
    with path.open(encoding="utf-8-sig") as handle:
        header = [name.strip() for name in handle.readline().split(",")]
    return [code for code in catalogue if code in header]


def _spread(values: Sequence[int]) -> dict[str, float]:
    if not values:
        return {}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def check_labels(
    folder: Path,
    codes: Sequence[str],
    *,
    validation_fraction: float = 0.15,
    seed: int = 0,
    test: Path | None = None,
) -> LabelReport:
    """The QA report of `folder` for `codes`; `validation_fraction` and `seed` are the recipe's
    split, `test` its held-out folder (patients there must not be in `folder`)."""
    if not codes:
        raise DatasetError(f"{folder}: no finding column of the catalogue in its labels")
    match = match_labelled_folder(folder, codes, allow_unknown=True)
    report = _report(folder, codes, match)
    examples = match.examples
    if examples:
        header_patient = {
            e.path: s.patient_id for e, s in zip(examples, match.studies, strict=True)
        }
        try:
            train, validation = split_by_patient(examples, validation_fraction, seed)
        except DatasetError as exc:
            report.blocking.append(str(exc))
        else:
            sides = [{header_patient[e.path] for e in side} for side in (train, validation)]
            report.patients_in_two_splits = len(sides[0] & sides[1])
        if test is not None and test.resolve() != folder.resolve():
            held_out = match_labelled_folder(test, codes, allow_unknown=True)
            mine = {e.patient_id for e in examples} | set(header_patient.values())
            theirs = {e.patient_id for e in held_out.examples} | {
                s.patient_id for s in held_out.studies
            }
            report.patients_in_two_splits += len(mine & theirs)
    _judge(report)
    return report


def _report(folder: Path, codes: Sequence[str], match: MatchedFolder) -> LabelReport:
    findings = {}
    for k, code in enumerate(codes):
        labels = [e.labels[k] for e in match.examples]
        findings[code] = FindingCounts(
            positives=labels.count(1),
            negatives=labels.count(0),
            unknown=labels.count(UNKNOWN_LABEL),
        )
    infos = [next(i for i in s.instances if i.path == e.path).info for e, s in _pairs(match)]
    return LabelReport(
        folder=str(folder),
        key=match.key,
        rows=match.rows,
        matched=len(match.examples),
        rows_without_files=len(match.rows_without_files),
        rows_without_files_lines=list(match.rows_without_files[:SHOWN_LINES]),
        studies_without_rows=match.studies_without_rows,
        ambiguous_rows=len(match.ambiguous_rows),
        unreadable_files=dict(match.unreadable),
        patients=len({e.patient_id for e in match.examples}),
        patients_in_two_splits=0,
        findings=findings,
        image_rows=_spread([i.rows for i in infos]),
        image_columns=_spread([i.columns for i in infos]),
        views=dict(Counter(i.view_position or "(none)" for i in infos).most_common()),
        body_parts=dict(Counter(i.body_part or "(none)" for i in infos).most_common()),
        modalities=dict(Counter(i.modality or "(none)" for i in infos).most_common()),
    )


def _pairs(match: MatchedFolder) -> zip[Any]:
    return zip(match.examples, match.studies, strict=True)


def _judge(report: LabelReport) -> None:
    """Sort the problems into blocking and warnings, each a sentence saying what to do."""
    blocking, warnings = report.blocking, report.warnings
    if not report.matched:
        blocking.append(
            f"no study matched a row: check that the {report.key} column holds the studies' "
            "values and that the DICOM files are under the folder"
        )
    for code, counts in report.findings.items():
        if report.matched and counts.positives == 0:
            blocking.append(f"{code}: no positive label; nothing to learn (drop it or label some)")
        elif report.matched and counts.negatives == 0:
            blocking.append(f"{code}: no negative label; its AUROC and threshold are undefined")
        elif counts.positives < FEW_POSITIVES:
            warnings.append(
                f"{code}: only {counts.positives} positive(s); its operating point rests on few "
                "cases"
            )
    if report.rows_without_files:
        lines = ", ".join(map(str, report.rows_without_files_lines))
        warnings.append(
            f"{report.rows_without_files} row(s) have no DICOM study (labels.csv line(s) {lines})"
        )
    if report.studies_without_rows:
        warnings.append(f"{report.studies_without_rows} DICOM stud(ies) have no row: left out")
    if report.ambiguous_rows:
        warnings.append(
            f"{report.ambiguous_rows} row(s) repeat a key or match two studies: left out"
        )
    if report.unreadable_files:
        total = sum(report.unreadable_files.values())
        warnings.append(f"{total} file(s) are not readable DICOM images: skipped")
    if report.patients_in_two_splits:
        warnings.append(
            f"{report.patients_in_two_splits} patient(s) are in two splits (by Patient ID): "
            "give their rows one patient_id, or move their studies to one folder"
        )


def render(report: LabelReport) -> str:
    """The report as text for a person (stderr of `train`, stdout of `labels check`)."""
    lines = [
        f"Label check of {report.folder} (rows matched by {report.key}):",
        f"  rows {report.rows}, matched studies {report.matched}, patients {report.patients}",
        f"  rows without files {report.rows_without_files}, studies without rows "
        f"{report.studies_without_rows}, unreadable files "
        f"{sum(report.unreadable_files.values())}, patients in two splits "
        f"{report.patients_in_two_splits}",
        "  finding          positives  negatives  unknown  prevalence",
    ]
    for code, c in report.findings.items():
        prevalence = "n/a" if c.prevalence is None else f"{c.prevalence:.1%}"
        lines.append(
            f"  {code:<16} {c.positives:>9}  {c.negatives:>9}  {c.unknown:>7}  {prevalence:>10}"
        )
    if report.image_rows:
        r, w = report.image_rows, report.image_columns
        lines.append(
            f"  image rows min/median/max {r['min']:g}/{r['median']:g}/{r['max']:g}, "
            f"columns {w['min']:g}/{w['median']:g}/{w['max']:g}"
        )
    for name, counts in (
        ("views", report.views),
        ("body parts", report.body_parts),
        ("modalities", report.modalities),
    ):
        lines.append(f"  {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    lines += [f"  BLOCKING: {text}" for text in report.blocking]
    lines += [f"  warning: {text}" for text in report.warnings]
    lines.append("  result: " + ("ok" if report.ok else "refused (blocking problems above)"))
    return "\n".join(lines)
