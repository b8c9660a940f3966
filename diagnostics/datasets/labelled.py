"""The labelled folder: the one home of its contract (columns, values, reader, writer).

`diagnostics synth` and `diagnostics feedback export` write this layout; training, evaluation and
comparison read it (the `synth` dataset layout). Keeping the column names, the meaning of a label
value, the reader and the writer together means a change to the contract is one change here, and
the writers cannot drift from what the reader accepts. The contract is also written down in
docs/architecture.md ("Labelled folder").

A folder holds DICOM studies in any structure (a PACS export: nested folders, arbitrary file
names, a DICOMDIR or not; `diagnostics synth` and `feedback export` write
`study-NNNNN/IM-NNNN.dcm`, named by a counter, never by a DICOM field) and `labels.csv`, one row
per study. Files are matched to rows by their DICOM header, never by their names:

- `study_instance_uid` or `accession_number` (one of them required; the Study Instance UID wins
  when both are there) matches the row to its DICOM study;
- one column per finding code (required for each finding read). `1` present, `0` absent; `-1`
  or an empty cell means unknown, read as `UNKNOWN_LABEL` (which training masks). The `synth`
  layout's reader accepts unknowns only when asked (`allow_unknown=True`) and refuses any
  mismatch between rows and studies; the `labelled` layout (a hospital's folder) accepts
  unknowns, and leaves out (with a warning, and in `diagnostics labels check`) rows without
  files and studies without rows;
- `patient_id` (optional; else the DICOM Patient ID) keeps a patient's studies on one side of a
  split; `view`, `file` and other columns are details, kept in `Example.details`;
- location columns, named after the finding, that become `Example.boxes` (pixels of the file):
  `<code>_x0`, `<code>_y0`, `<code>_x1`, `<code>_y1` (a box), or else `<code>_x`, `<code>_y`
  and `<code>_diameter_mm` (a round lesion: centre and diameter, needs the pixel spacing).

A `diagnostics research-export` folder (no labels.csv; `feedback.jsonl` and `results.jsonl`
beside `studies/`) is read as it is: its rows come from the radiologists' verdicts
(`diagnostics.datasets.exported`). Of a study's images, a frontal one (PA or AP) is used.

Which findings to read is the caller's choice (a recipe's or a model package's findings, codes of
the catalogue in `diagnostics.findings`): the reader knows no finding by name. `FINDING_CODES`
and `LABEL_COLUMNS` are the columns `diagnostics synth` writes and the default set.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from diagnostics.datasets.common import read_csv
from diagnostics.datasets.records import UNKNOWN_LABEL, Box, Example
from diagnostics.dicom import InstanceInfo, scan
from diagnostics.dicom.grouping import FileInfo, Study
from diagnostics.durable import write_file
from diagnostics.errors import DatasetError

log = logging.getLogger(__name__)

LABELS_FILE = "labels.csv"
"""The labels file's name, beside the study folders."""

FINDING_CODES: tuple[str, ...] = ("nodule", "consolidation", "cardiomegaly")
"""The findings `diagnostics synth` draws, in the order of its 0/1 columns of labels.csv."""

LABEL_COLUMNS: tuple[str, ...] = (
    "study_instance_uid",
    *FINDING_CODES,
    "patient_id",
    "view",
    "file",
    "nodule_diameter_mm",
    "nodule_x",
    "nodule_y",
    "nodule_contrast",
    "consolidation_x0",
    "consolidation_y0",
    "consolidation_x1",
    "consolidation_y1",
    "consolidation_extent",
    "ctr",
    "photometric_interpretation",
    "transfer_syntax",
)
"""The columns of labels.csv as `diagnostics synth` writes them, in order."""

LABEL_VALUES: dict[str, int] = {"1": 1, "0": 0}
"""A finding's cell: present or absent."""

UNKNOWN_VALUES: dict[str, int] = {"-1": UNKNOWN_LABEL, "": UNKNOWN_LABEL}
"""A finding's cell when the label is not known (read only with `allow_unknown=True`)."""


KEY_COLUMNS: tuple[str, ...] = ("study_instance_uid", "accession_number")
"""The columns that can match a row to its study, in order of preference."""


def read_labels(
    path: Path, codes: Sequence[str], *, allow_unknown: bool = False
) -> list[dict[str, str]]:
    """The rows of a labels.csv, each finding cell checked (DatasetError naming file, line and
    column otherwise); a byte-order mark and blank lines are tolerated."""
    return [values for _, values in _read_rows(path, codes, allow_unknown)[1]]


def _read_rows(
    path: Path, codes: Sequence[str], allow_unknown: bool
) -> tuple[str, list[tuple[int, dict[str, str]]]]:
    """The key column and the (line, row) pairs of a labels.csv, checked."""
    if not path.is_file():
        raise DatasetError(f"{path}: no labels file (expected {LABELS_FILE} beside the studies)")
    table = read_csv(path, codes, "labelled folder")
    key = next((name for name in KEY_COLUMNS if name in table.columns), None)
    if key is None:
        raise DatasetError(
            f"{path}: missing column 'study_instance_uid' (or 'accession_number') to match rows "
            "to studies"
        )
    allowed = {**LABEL_VALUES, **UNKNOWN_VALUES} if allow_unknown else LABEL_VALUES
    expected = "0, 1, -1 or empty" if allow_unknown else "0 or 1"
    for row in table.rows:
        if not row.values.get(key, "").strip():
            raise DatasetError(f"{path}, line {row.line}: {key} is empty")
        for code in codes:
            value = row.values.get(code, "")
            if value not in allowed:
                raise DatasetError(
                    f"{path}, line {row.line}: {code} must be {expected}, not {value!r}"
                )
        row.values[key] = row.values[key].strip()
    return key, [(row.line, row.values) for row in table.rows]


def iter_label_rows(path: Path) -> Iterator[dict[str, str]]:
    """The rows of a labels.csv as written, unchecked (for looking at ground truth)."""
    with path.open(newline="") as handle:
        yield from csv.DictReader(handle)


def finding_boxes(
    row: Mapping[str, str], codes: Sequence[str], info: InstanceInfo
) -> tuple[Box | None, ...]:
    """Per finding, where it is as fractions of the image (None when absent or unknown).

    From the finding's location columns (see the module docstring), only where it is labelled
    present. Training uses these to point each finding's CAM at the right place.
    """
    spacing = info.pixel_spacing_mm[1] if info.pixel_spacing_mm else None

    def number(name: str) -> float | None:
        text = row.get(name) or ""
        try:
            return float(text)
        except ValueError:
            return None

    boxes: list[Box | None] = []
    for code in codes:
        box: Box | None = None
        if row.get(code) == "1":
            x0, y0, x1, y1 = (number(f"{code}_{c}") for c in ("x0", "y0", "x1", "y1"))
            x, y, d = number(f"{code}_x"), number(f"{code}_y"), number(f"{code}_diameter_mm")
            if x0 is not None and y0 is not None and x1 is not None and y1 is not None:
                box = (x0, y0, x1, y1)
            elif x is not None and y is not None and d is not None and spacing:
                r = d / 2 / spacing
                box = (x - r, y - r, x + r, y + r)
        if box is not None:
            w, h = info.columns, info.rows
            box = (box[0] / w, box[1] / h, box[2] / w, box[3] / h)
        boxes.append(box)
    return tuple(boxes)


@dataclass(frozen=True)
class MatchedFolder:
    """A labelled folder's rows matched to its studies, and what did not match.

    Counts and CSV line numbers only: the identifiers themselves (UIDs, accession numbers,
    paths that may name a patient) stay out of reports and logs.
    """

    examples: list[Example]
    studies: list[Study[FileInfo]]
    """The matched studies, in the order of `examples`."""
    key: str
    """The column rows were matched by (or `research export` for an export's verdicts)."""
    rows: int
    rows_without_files: tuple[int, ...]
    """labels.csv line numbers (for a research export: study counters) with no DICOM study."""
    studies_without_rows: int
    ambiguous_rows: tuple[int, ...]
    """Line numbers of rows whose key matched two studies or that repeat an earlier row."""
    unreadable: dict[str, int] = field(default_factory=dict)
    """Files under the folder that are not DICOM images, by reason (DICOMDIR not counted)."""
    first_absent: str | None = field(default=None, repr=False)
    first_unlabelled: str | None = field(default=None, repr=False)
    """The first key of each mismatch, for the strict reader's errors on the project's own
    folders (synth, feedback export); never in reports."""


_NOT_IMAGES = {LABELS_FILE, "DICOMDIR", "feedback.jsonl", "results.jsonl", "quarantine.jsonl"}
_NOT_IMAGES_TOP = {"manifest.json"}


def match_labelled_folder(
    folder: Path, codes: Sequence[str], *, allow_unknown: bool = True
) -> MatchedFolder:
    """Read the labels (labels.csv, or a research export's verdicts) and match them to the
    DICOM studies found anywhere under `folder` by their headers."""
    from diagnostics.datasets.exported import is_research_export, research_export_rows

    if not (folder / LABELS_FILE).is_file() and is_research_export(folder):
        key, rows = "study_instance_uid", research_export_rows(folder, codes)
    else:
        key, rows = _read_rows(folder / LABELS_FILE, codes, allow_unknown)
    studies, refused = scan([folder])
    unreadable: Counter[str] = Counter()
    for path, exc in refused:
        top = path.parent == folder and path.name in _NOT_IMAGES_TOP
        if path.name not in _NOT_IMAGES and not top:
            unreadable[type(exc).__name__] += 1
    if unreadable:
        log.warning("%s: %d file(s) skipped: not DICOM images", folder, sum(unreadable.values()))
    index: dict[str, list[Study[FileInfo]]] = {}
    for study in studies:
        value = study.study_instance_uid if key != "accession_number" else _accession(study)
        if value:
            index.setdefault(value, []).append(study)
    values = {**LABEL_VALUES, **UNKNOWN_VALUES}
    examples: list[Example] = []
    matched: list[Study[FileInfo]] = []
    used: set[str] = set()
    absent: list[int] = []
    ambiguous: list[int] = []
    for line, row in rows:
        found = index.get(row[key], [])
        if not found:
            absent.append(line)
            continue
        if len(found) > 1 or row[key] in used:
            ambiguous.append(line)
            continue
        used.add(row[key])
        study = found[0]
        first = _frontal(study)
        examples.append(
            Example(
                path=first.path,
                study_instance_uid=study.study_instance_uid,
                patient_id=row.get("patient_id") or study.patient_id,
                labels=tuple(values[row.get(code, "")] for code in codes),
                details=row,
                boxes=finding_boxes(row, codes, first.info),
            )
        )
        matched.append(study)
    listed = {row[key] for _, row in rows}
    unlabelled = [k for k, group in index.items() if k not in listed for _ in group]
    unlabelled += [
        s.study_instance_uid for s in studies if key == "accession_number" and not _accession(s)
    ]
    return MatchedFolder(
        examples,
        matched,
        key,
        len(rows),
        tuple(absent),
        len(unlabelled),
        tuple(ambiguous),
        dict(unreadable),
        first_absent=next((row[key] for line, row in rows if line in absent[:1]), None),
        first_unlabelled=min(unlabelled, default=None),
    )


def _accession(study: Study[FileInfo]) -> str:
    value = study.instances[0].info.dataset.get("AccessionNumber", "")
    return str(value or "").strip()


def _frontal(study: Study[FileInfo]) -> FileInfo:
    """The study's first frontal (PA/AP) image, else its first image."""
    for item in study.instances:
        if (item.info.view_position or "").upper() in ("PA", "AP"):
            return item
    return study.instances[0]


def load_labelled_folder(
    folder: Path, codes: Sequence[str], *, allow_unknown: bool = False
) -> list[Example]:
    """Match labels.csv rows to the DICOM studies under `folder`, refusing any mismatch.

    Labels are in the order of `codes`. Every labelled study must have an image and every image
    study a label: a mismatch usually means the wrong labels file, and training on it would
    silently learn noise. (`load_hospital_folder` is the tolerant reader of the `labelled`
    layout.)
    """
    match = match_labelled_folder(folder, codes, allow_unknown=allow_unknown)
    where = f"{folder}/{LABELS_FILE}"
    if match.ambiguous_rows:
        raise DatasetError(f"{where} lists a study more than once (line {match.ambiguous_rows[0]})")
    if match.rows_without_files:
        raise DatasetError(
            f"{where} lists {len(match.rows_without_files)} stud(ies) with no DICOM file under "
            f"{folder}, e.g. {match.first_absent}"
        )
    if match.studies_without_rows:
        raise DatasetError(
            f"{match.studies_without_rows} stud(ies) under {folder} have no row in {LABELS_FILE}, "
            f"e.g. {match.first_unlabelled}"
        )
    return match.examples


def load_hospital_folder(folder: Path, codes: Sequence[str]) -> list[Example]:
    """The `labelled` layout: any DICOM tree with labels.csv keyed by Study Instance UID or
    accession number (or a research export). Unknown labels are kept as unknown; rows without
    files and studies without rows are left out with a warning (`diagnostics labels check`
    lists them), since a PACS export rarely matches a spreadsheet exactly."""
    match = match_labelled_folder(folder, codes, allow_unknown=True)
    if match.ambiguous_rows:
        log.warning(
            "%s: %d row(s) left out: their key repeats or matches two studies (e.g. line %d)",
            folder,
            len(match.ambiguous_rows),
            match.ambiguous_rows[0],
        )
    if match.rows_without_files:
        log.warning(
            "%s: %d row(s) have no DICOM study (e.g. line %d)",
            folder,
            len(match.rows_without_files),
            match.rows_without_files[0],
        )
    if match.studies_without_rows:
        log.warning("%s: %d stud(ies) have no row", folder, match.studies_without_rows)
    return match.examples


def write_labels(
    path: Path, rows: Iterable[Mapping[str, str]], columns: Sequence[str] = LABEL_COLUMNS
) -> Path:
    """Publish labels.csv at `path` durably: `columns` in order, a cell a row lacks left empty.

    A key that is not a column is an error (ValueError), not a silently dropped value.
    """
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=list(columns), restval="")
    writer.writeheader()
    writer.writerows(rows)
    return write_file(path, buffer.getvalue().encode("utf-8"))
