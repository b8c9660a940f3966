"""RSNA Pneumonia Detection Challenge: DICOM images, one labels row per box.

Layout (the Kaggle release)::

    ROOT/stage_2_train_labels.csv          patientId, x, y, width, height, Target
    ROOT/stage_2_detailed_class_info.csv   optional: patientId, class
    ROOT/stage_2_train_images/<patientId>.dcm

A patient with lung opacities has one row per box (Target 1, box in pixels of the DICOM image);
a patient without has one row with Target 0 and an empty box. `class` is "Lung Opacity"
(Target 1), "Normal" or "No Lung Opacity / Not Normal" (both Target 0); when the file is there
it is checked against Target, because a disagreement means one of the files is not the release.

Mapping: Target 1 ("Lung Opacity", opacities suggestive of pneumonia) -> `pneumonia` by default,
or -> `consolidation` with the option `opacity_finding="consolidation"`, for comparing with a
model that reports consolidation; say which you chose when you report results. One patient is
one image is one study. The images are all frontal (PA or AP) radiographs by construction, so no
view filter is applied. Several boxes are merged into their enclosing box. The official test
images have no public labels, so `split="train"`/`"test"` hold out `test_fraction` of the
patients by a hash of patientId.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from diagnostics.datasets.common import (
    ImageCheck,
    Row,
    Split,
    Table,
    choice,
    enclosing,
    fraction,
    in_split,
    missing_policy,
    number,
    pixel_box,
    read_csv,
)
from diagnostics.datasets.records import Box, Example
from diagnostics.dicom import read_info
from diagnostics.errors import ConfigurationError, DatasetError, InputError

LAYOUT = "rsna"
LABELS_FILE = "stage_2_train_labels.csv"
CLASS_FILE = "stage_2_detailed_class_info.csv"
IMAGES = "stage_2_train_images"
CLASSES = {"Lung Opacity": 1, "Normal": 0, "No Lung Opacity / Not Normal": 0}
OPACITY_FINDINGS = ("pneumonia", "consolidation")
MAPPING = {"Lung Opacity (Target 1)": "pneumonia (or consolidation, by option)"}
BOX_COLUMNS = ("x", "y", "width", "height")


@dataclass
class _Patient:
    first: Row
    target: int
    boxes: list[tuple[Row, tuple[float, float, float, float]]] = field(default_factory=list)


def _read_labels(table: Table) -> dict[str, _Patient]:
    patients: dict[str, _Patient] = {}
    for row in table.rows:
        pid = row.get("patientId")
        if not pid:
            raise table.error(row, "patientId", "empty patientId")
        if row.get("Target") not in ("0", "1"):
            raise table.error(row, "Target", f"must be 0 or 1, not {row.get('Target')!r}")
        target = int(row.get("Target"))
        patient = patients.setdefault(pid, _Patient(row, target))
        if patient.target != target:
            raise table.error(
                row,
                "Target",
                f"patient {pid} has Target {target} here but {patient.target} on line "
                f"{patient.first.line}",
            )
        given = [column for column in BOX_COLUMNS if row.get(column)]
        if target == 0 and given:
            raise table.error(row, given[0], "Target 0 (no opacity) must not have a box")
        if target == 1:
            if len(given) < len(BOX_COLUMNS):
                missing = next(c for c in BOX_COLUMNS if c not in given)
                raise table.error(row, missing, "Target 1 needs a box: x, y, width and height")
            x, y, w, h = (number(table, row, column) for column in BOX_COLUMNS)
            patient.boxes.append((row, (x, y, w, h)))
    return patients


def _check_classes(path: Path, patients: dict[str, _Patient]) -> None:
    table = read_csv(path, ("patientId", "class"), LAYOUT)
    for row in table.rows:
        name = row.get("class")
        if name not in CLASSES:
            raise table.error(
                row, "class", f"{name!r} is not one of {', '.join(map(repr, CLASSES))}"
            )
        patient = patients.get(row.get("patientId"))
        if patient is not None and CLASSES[name] != patient.target:
            raise table.error(
                row,
                "class",
                f"{name!r} contradicts Target {patient.target} in {LABELS_FILE} line "
                f"{patient.first.line}",
            )


def _box(table: Table, patient: _Patient, path: Path) -> Box | None:
    """The enclosing box of a patient's opacities, as fractions of the DICOM image."""
    if not patient.boxes:
        return None
    try:
        info = read_info(path)
    except InputError as exc:
        raise DatasetError(f"{path}: {exc}") from None
    merged: Box | None = None
    for row, values in patient.boxes:
        box = pixel_box(table, row, BOX_COLUMNS, values, (info.rows, info.columns))
        merged = enclosing(merged, box)
    return merged


def load_rsna(
    root: Path,
    codes: Sequence[str],
    *,
    split: Split = "all",
    test_fraction: object = 0.2,
    opacity_finding: object = "pneumonia",
    missing: object = "error",
) -> list[Example]:
    """RSNA pneumonia examples; `codes` must be the one finding opacities map to."""
    target_code = choice("opacity_finding", opacity_finding, OPACITY_FINDINGS)
    held_out = fraction("test_fraction", test_fraction)
    if list(codes) != [target_code]:
        raise ConfigurationError(
            f"the rsna layout labels one finding, {target_code!r} (opacity_finding); "
            f"asked for {', '.join(codes)}"
        )
    check = ImageCheck(LAYOUT, missing_policy(missing))
    table = read_csv(root / LABELS_FILE, ("patientId", *BOX_COLUMNS, "Target"), LAYOUT)
    patients = _read_labels(table)
    if (root / CLASS_FILE).is_file():
        _check_classes(root / CLASS_FILE, patients)
    examples = []
    for pid, patient in patients.items():
        if not in_split(pid, split, held_out, LAYOUT):
            continue
        path = root / IMAGES / f"{pid}.dcm"
        where = f"{table.path}, line {patient.first.line}, column 'patientId'"
        if not check.exists(where, path):
            continue
        examples.append(
            Example(
                path=path,
                study_instance_uid=pid,
                patient_id=pid,
                labels=(patient.target,),
                details={"layout": LAYOUT, "boxes": str(len(patient.boxes))},
                boxes=(_box(table, patient, path),),
            )
        )
    check.finish()
    return examples
