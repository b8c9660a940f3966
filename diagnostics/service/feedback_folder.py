"""`diagnostics feedback export`: radiologists' feedback as a labelled folder training reads.

The folder is the labelled-folder contract (`diagnostics.datasets.labelled`, which synth also
writes and training reads): one folder per study with one DICOM file, named by our own counter
(`study-00001/IM-0001.dcm`, never by a DICOM field), and `labels.csv` with its `LABEL_COLUMNS`
plus, per finding, where its label came from.

How a label is decided, per study and finding (the latest verdict wins; a person may change
their mind, and each verdict is read against the result version it was given on):

- `agree`: the model's flag on that version (flagged 1, not flagged 0);
- `disagree`: the opposite of that flag;
- `missed`: 1, with the location the radiologist marked;
- `comment`: no label information;
- no verdict: with `unreviewed="model"` (the default), the model's flag on the newest
  reviewed version, because the radiologist saw it on the same page and let it stand; the
  column `label_source_<code>` says `model` rather than `feedback`, so training can weight
  or drop those. With `unreviewed="skip"` a study is exported only when every finding has a
  verdict. `labels.csv` holds only 0 and 1 (its contract), so "unknown" is not an option.
  For the same reason a finding that only some of the exported studies were screened for (the
  model was replaced by one with other findings) is left out of the folder, and the summary
  says so: a blank cell would stop training on every finding.

Locations come only from people, never from the model's boxes: agreeing with a flag is not
a judgement on its box. A marked nodule gives `nodule_x`/`nodule_y` (the point, or the centre
of a dragged region) and, for a region, `nodule_diameter_mm` from its mean side and the pixel
spacing; a consolidation gives `consolidation_x0..y1` when a region was dragged. A location
on another image than the exported one is left out.

The DICOM files are copied unchanged, patient identifiers included: this export is for
retraining inside the hospital. Data leaving it goes through `diagnostics research-export`.
Like that export, the folder is written beside OUT and renamed into place at the end, so OUT
is complete or absent, and an existing OUT is never overwritten.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from diagnostics.datasets.labelled import FINDING_CODES, LABEL_COLUMNS, LABELS_FILE, write_labels
from diagnostics.dicom.image import InstanceInfo
from diagnostics.dicom.reader import read_info
from diagnostics.durable import publish_folder, staging_folder
from diagnostics.errors import ConfigurationError, InputError, StoreError
from diagnostics.results import StudyResult
from diagnostics.store import read_snapshot, store_exists
from diagnostics.store.records import Feedback, feedback_from_row

Unreviewed = Literal["model", "skip"]
LABEL_VERDICTS = ("agree", "disagree", "missed")
MISSING = "image missing"
"""Why a study whose image is gone (the retention window purged it) is left out."""


@dataclass(frozen=True)
class FeedbackExport:
    out: Path
    studies: int
    skipped: dict[str, int] = field(default_factory=dict)
    """Why studies with feedback were left out, and how many."""
    positives: dict[str, int] = field(default_factory=dict)
    from_feedback: int = 0
    """Labels set by a verdict (the rest are the model's flags)."""
    findings_left_out: dict[str, int] = field(default_factory=dict)
    """Findings only some studies have a label for, and on how many studies they had one."""
    images_missing: tuple[str, ...] = ()
    """Studies left out because their image is gone (purged by the retention window, also
    while this export ran): counted under `skipped`, named here."""

    def as_dict(self) -> dict[str, object]:
        return {
            "out": str(self.out),
            "studies": self.studies,
            "labels": str(self.out / LABELS_FILE),
            "positives": self.positives,
            "labels_from_feedback": self.from_feedback,
            "skipped": self.skipped,
            "findings_left_out": self.findings_left_out,
            "images_missing": list(self.images_missing),
        }


@dataclass(frozen=True)
class _Snapshot:
    feedback: dict[str, list[Feedback]]
    results: dict[tuple[str, int], StudyResult]
    instances: dict[tuple[str, str], Path]


def export_feedback(
    storage: Path, out: Path, unreviewed: Unreviewed = "model", database: str | None = None
) -> FeedbackExport:
    """Write the labelled folder (see the module docstring); returns what went in. `database`:
    the store's PostgreSQL when the nodes share one (the instances stay in `storage`)."""
    if unreviewed not in ("model", "skip"):
        raise ConfigurationError(f"--unreviewed must be model or skip, not {unreviewed!r}")
    if out.exists():
        raise ConfigurationError(f"--out {out} already exists: an export is never overwritten")
    snapshot = _read(storage, database)
    with staging_folder(out) as staging:
        summary = _write(staging, snapshot, unreviewed)
        publish_folder(staging, out)
    return FeedbackExport(out, *summary)


def _read(storage: Path, database: str | None = None) -> _Snapshot:
    """One consistent read-only snapshot of the store."""
    if not store_exists(storage, database):
        raise ConfigurationError(f"--storage {storage}: no intake database there")
    results: dict[tuple[str, int], StudyResult] = {}
    instances: dict[tuple[str, str], Path] = {}
    with read_snapshot(storage, database) as snapshot:
        rows = snapshot.feedback_rows() or []
        studies = sorted({str(r["study_instance_uid"]) for r in rows})
        for study in studies:
            for version, text in snapshot.results_of(study):
                results[(study, version)] = StudyResult.from_json(text)
            for sop, path in snapshot.instances_of(study):
                instances[(study, sop)] = path
    feedback: dict[str, list[Feedback]] = defaultdict(list)
    for row in rows:
        feedback[str(row["study_instance_uid"])].append(feedback_from_row(row))
    return _Snapshot(dict(feedback), results, instances)


def _write(
    root: Path, snapshot: _Snapshot, unreviewed: Unreviewed
) -> tuple[int, dict[str, int], dict[str, int], int, dict[str, int], tuple[str, ...]]:
    """The folder's contents. An image the retention window purged after the snapshot was
    taken is a per-study skip (`image missing`), never a failed export."""
    skipped: dict[str, int] = defaultdict(int)
    missing: list[str] = []
    label_rows: list[dict[str, str]] = []
    codes_seen: list[str] = []
    # Studies in the order their first feedback arrived: stable counters across exports.
    order = sorted(snapshot.feedback, key=lambda s: snapshot.feedback[s][0].id)
    for study in order:
        built = _study_row(study, snapshot, unreviewed)
        if isinstance(built, str):
            skipped[built] += 1
            missing += [study] if built == MISSING else []
            continue
        row, source, sources = built
        folder = f"study-{len(label_rows) + 1:05d}"
        (root / folder).mkdir()
        try:
            shutil.copyfile(source, root / folder / "IM-0001.dcm")
        except FileNotFoundError:  # purged since the snapshot
            (root / folder).rmdir()
            skipped[MISSING] += 1
            missing.append(study)
            continue
        except OSError as exc:
            raise StoreError(f"cannot copy a stored instance: {exc}") from exc
        row["file"] = f"{folder}/IM-0001.dcm"
        label_rows.append(row)
        codes_seen += [c for c in sources if c not in codes_seen]
    labelled = {c: sum(c in r for r in label_rows) for c in codes_seen}
    left_out = {c: n for c, n in labelled.items() if n < len(label_rows)}
    codes = [c for c in codes_seen if c not in left_out]
    unlabelled = [*left_out, *(c for c in FINDING_CODES if c not in codes)]
    columns = [c for c in LABEL_COLUMNS if not _about(c, unlabelled)]
    columns[1:1] = [c for c in codes if c not in columns]
    columns += [f"label_source_{c}" for c in codes] + ["result_version", "model"]
    label_rows = [{k: v for k, v in r.items() if not _about(k, unlabelled)} for r in label_rows]
    write_labels(root / LABELS_FILE, label_rows, columns)
    positives = {c: sum(r[c] == "1" for r in label_rows) for c in codes}
    from_feedback = sum(r[f"label_source_{c}"] == "feedback" for r in label_rows for c in codes)
    return len(label_rows), dict(skipped), positives, from_feedback, left_out, tuple(missing)


def _about(column: str, codes: Sequence[str]) -> bool:
    """Whether a labels.csv column belongs to one of `codes`: its label, location or source."""
    return any(
        column in (code, f"label_source_{code}") or column.startswith(f"{code}_") for code in codes
    )


def _study_row(
    study: str, snapshot: _Snapshot, unreviewed: Unreviewed
) -> tuple[dict[str, str], Path, dict[str, str]] | str:
    """The labels.csv row, the file to copy and each label's source; or why the study is out."""
    entries = [f for f in snapshot.feedback[study] if f.verdict in LABEL_VERDICTS]
    if not entries:
        return "only comments"
    latest: dict[str, Feedback] = {}
    for entry in entries:  # oldest first: later verdicts replace earlier ones
        latest[entry.code] = entry
    version = max(f.version for f in entries)
    reference = snapshot.results.get((study, version))
    if reference is None or reference.status != "analyzed":
        return "result missing"
    labels: dict[str, str] = {}
    sources: dict[str, str] = {}
    for finding in reference.findings:
        verdict = latest.get(finding.code)
        if verdict is None:
            if unreviewed == "skip":
                return "not every finding reviewed"
            labels[finding.code], sources[finding.code] = str(int(finding.flagged)), "model"
            continue
        label = _label(verdict, snapshot.results.get((study, verdict.version)))
        if label is None:
            return "result missing"
        labels[finding.code], sources[finding.code] = str(label), "feedback"
    sop = _exported_instance(reference, list(latest.values()))
    path = snapshot.instances.get((study, sop))
    if path is None:
        return MISSING
    try:
        info = read_info(path)
    except InputError:
        return "image unreadable" if path.is_file() else MISSING
    row = {
        "study_instance_uid": study,
        **labels,
        "patient_id": info.uids.patient_id,
        "view": info.view_position or "",
        "photometric_interpretation": info.photometric_interpretation,
        "transfer_syntax": info.transfer_syntax_uid,
        **{f"label_source_{c}": s for c, s in sources.items()},
        "result_version": str(version),
        "model": f"{reference.model.name} {reference.model.version}" if reference.model else "",
    }
    marks = [f for f in latest.values() if f.verdict == "missed" and f.sop_instance_uid == sop]
    for mark in marks:
        row.update(_location(mark, info))
    return row, path, sources


def _label(verdict: Feedback, result: StudyResult | None) -> int | None:
    if verdict.verdict == "missed":
        return 1
    if result is None:
        return None
    flags = {f.code: f.flagged for f in result.findings}
    if verdict.code not in flags:
        return None
    flagged = flags[verdict.code]
    return int(flagged) if verdict.verdict == "agree" else int(not flagged)


def _exported_instance(result: StudyResult, latest: list[Feedback]) -> str:
    """The image a study is exported with: where a missed finding was marked, else the image
    the strongest flagged (or most probable) finding comes from."""
    marked = [f for f in latest if f.verdict == "missed" and f.sop_instance_uid]
    if marked:
        return str(max(marked, key=lambda f: f.id).sop_instance_uid)
    best = max(result.findings, key=lambda f: (f.flagged, f.probability))
    return best.sop_instance_uid


def _location(mark: Feedback, info: InstanceInfo) -> dict[str, str]:
    if mark.x is None or mark.y is None:
        return {}
    if mark.code == "nodule":
        out = {"nodule_x": f"{mark.x:.1f}", "nodule_y": f"{mark.y:.1f}"}
        if mark.box is not None and info.pixel_spacing_mm:
            x0, y0, x1, y1 = mark.box
            side = ((x1 - x0) + (y1 - y0)) / 2.0
            out["nodule_diameter_mm"] = f"{side * info.pixel_spacing_mm[1]:.2f}"
        return out
    if mark.code == "consolidation" and mark.box is not None:
        x0, y0, x1, y1 = (round(v) for v in mark.box)
        return {
            "consolidation_x0": str(x0),
            "consolidation_y0": str(y0),
            "consolidation_x1": str(x1),
            "consolidation_y1": str(y1),
        }
    return {}
