"""The labelled folder: the one home of its contract (columns, values, reader, writer).

`diagnostics synth` and `diagnostics feedback export` write this layout; training, evaluation and
comparison read it (the `synth` dataset layout). Keeping the column names, the meaning of a label
value, the reader and the writer together means a change to the contract is one change here, and
the writers cannot drift from what the reader accepts. The contract is also written down in
docs/architecture.md ("Labelled folder").

A folder holds DICOM studies (`study-NNNNN/IM-NNNN.dcm`, named by a counter, never by a DICOM
field) and `labels.csv`, one row per study:

- `study_instance_uid` (required) matches the row to its DICOM study;
- one column per finding code (required for each finding read). `1` present, `0` absent; `-1`
  or an empty cell means unknown and is accepted only when the reader is asked to
  (`allow_unknown=True`, read as `UNKNOWN_LABEL`, which training masks). Today's writers write
  only 0 and 1, and a folder is refused by default if it holds anything else;
- `patient_id` (optional; else the DICOM Patient ID) keeps a patient's studies on one side of a
  split; `view`, `file` and other columns are details, kept in `Example.details`;
- location columns, named after the finding, that become `Example.boxes` (pixels of the file):
  `<code>_x0`, `<code>_y0`, `<code>_x1`, `<code>_y1` (a box), or else `<code>_x`, `<code>_y`
  and `<code>_diameter_mm` (a round lesion: centre and diameter, needs the pixel spacing).

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
from pathlib import Path

from diagnostics.datasets.common import read_csv
from diagnostics.datasets.records import UNKNOWN_LABEL, Box, Example
from diagnostics.dicom import InstanceInfo, scan
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


def read_labels(
    path: Path, codes: Sequence[str], *, allow_unknown: bool = False
) -> list[dict[str, str]]:
    """The rows of a labels.csv, each finding cell checked (DatasetError naming file, line and
    column otherwise); a byte-order mark and blank lines are tolerated."""
    if not path.is_file():
        raise DatasetError(f"{path}: no labels file (expected {LABELS_FILE} beside the studies)")
    table = read_csv(path, ("study_instance_uid", *codes), "labelled folder")
    allowed = {**LABEL_VALUES, **UNKNOWN_VALUES} if allow_unknown else LABEL_VALUES
    expected = "0, 1, -1 or empty" if allow_unknown else "0 or 1"
    for row in table.rows:
        for code in codes:
            value = row.values.get(code, "")
            if value not in allowed:
                raise DatasetError(
                    f"{path}, line {row.line}: {code} must be {expected}, not {value!r}"
                )
    return [row.values for row in table.rows]


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


def load_labelled_folder(
    folder: Path, codes: Sequence[str], *, allow_unknown: bool = False
) -> list[Example]:
    """Match labels.csv rows to the DICOM studies under `folder` by Study Instance UID.

    Labels are in the order of `codes`. Every labelled study must have an image and every image
    study a label: a mismatch usually means the wrong labels file, and training on it would
    silently learn noise.
    """
    rows = read_labels(folder / LABELS_FILE, codes, allow_unknown=allow_unknown)
    studies, refused = scan([folder])
    for path, exc in refused:
        if path.name != LABELS_FILE:
            log.warning("%s: skipped: %s", path, exc)
    by_uid = {study.study_instance_uid: study for study in studies}
    labelled = {row["study_instance_uid"] for row in rows}
    if len(labelled) != len(rows):
        counts = Counter(row["study_instance_uid"] for row in rows)
        repeated = next(uid for uid, count in counts.items() if count > 1)
        raise DatasetError(f"{folder}/{LABELS_FILE} lists study {repeated} more than once")
    unlabelled = sorted(set(by_uid) - labelled)
    absent = [row["study_instance_uid"] for row in rows if row["study_instance_uid"] not in by_uid]
    if absent:
        raise DatasetError(
            f"{folder}/{LABELS_FILE} lists {len(absent)} stud(ies) with no DICOM file under "
            f"{folder}, e.g. {absent[0]}"
        )
    if unlabelled:
        raise DatasetError(
            f"{len(unlabelled)} stud(ies) under {folder} have no row in {LABELS_FILE}, "
            f"e.g. {unlabelled[0]}"
        )
    values = {**LABEL_VALUES, **UNKNOWN_VALUES}
    examples = []
    for row in rows:
        study = by_uid[row["study_instance_uid"]]
        first = study.instances[0]
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
    return examples


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
