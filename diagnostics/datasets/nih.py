"""NIH ChestX-ray14: PNG images, `Data_Entry_2017.csv`, official split lists and boxes.

Layout (the NIH release, or its Kaggle copy with `images_001/images/...` folders)::

    ROOT/Data_Entry_2017.csv       (or Data_Entry_2017_v2020.csv)
         Image Index, Finding Labels, Follow-up #, Patient ID, Patient Age, Patient Gender
         (Patient Sex in v2020), View Position, OriginalImage[Width, Height], ...
    ROOT/train_val_list.txt, ROOT/test_list.txt    official split, one image name per line
    ROOT/BBox_List_2017.csv        optional: Image Index, Finding Label, Bbox [x,y,w,h]
    ROOT/**/<Image Index>          the PNGs, anywhere below ROOT

`Finding Labels` is pipe-separated (`Cardiomegaly|Effusion`) or `No Finding`. Mapping to our
coded findings (other NIH labels are read, checked and not used):

    Nodule -> nodule            Consolidation -> consolidation    Cardiomegaly -> cardiomegaly
    Effusion -> effusion        Atelectasis -> atelectasis        Pneumothorax -> pneumothorax
    Pneumonia -> pneumonia
    (Mass, Infiltration, Edema, Emphysema, Fibrosis, Pleural_Thickening, Hernia: not mapped)

Every image is one study (follow-up visits are separate studies of the same patient); patients
come from `Patient ID`. Only PA and AP views are kept (`View Position`, when the column exists).
Intensity: the PNGs are stored for display, brighter = denser (MONOCHROME2). Boxes are in the
PNG's pixels; several boxes of one finding on one image are merged into their enclosing box.
`split="train"` and `"test"` use the official lists, which keep patients apart.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from diagnostics.datasets.common import (
    ImageCheck,
    Row,
    Split,
    Table,
    details,
    enclosing,
    flag,
    missing_policy,
    number,
    pixel_box,
    read_csv,
    read_list,
    require_file,
)
from diagnostics.datasets.records import Box, Example
from diagnostics.errors import DatasetError, InputError
from diagnostics.images import plain_image_size

log = logging.getLogger(__name__)

LAYOUT = "nih"
ENTRY_FILES = ("Data_Entry_2017.csv", "Data_Entry_2017_v2020.csv")
BOX_FILE = "BBox_List_2017.csv"
SPLIT_FILES = {"train": "train_val_list.txt", "test": "test_list.txt"}
NO_FINDING = "No Finding"
LABELS = (
    "Atelectasis",
    "Cardiomegaly",
    "Consolidation",
    "Edema",
    "Effusion",
    "Emphysema",
    "Fibrosis",
    "Hernia",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pleural_Thickening",
    "Pneumonia",
    "Pneumothorax",
)
"""The fourteen ChestX-ray14 labels, as `Finding Labels` spells them."""
MAPPING = {
    "Nodule": "nodule",
    "Consolidation": "consolidation",
    "Cardiomegaly": "cardiomegaly",
    "Effusion": "effusion",
    "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax",
    "Pneumonia": "pneumonia",
}
BOX_ALIASES = {"Infiltrate": "Infiltration"}
"""The box file spells one label differently from the entry file."""
FRONTAL = ("PA", "AP")
COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
VIEW = "View Position"


def _entry_file(root: Path) -> Path:
    for name in ENTRY_FILES:
        if (root / name).is_file():
            return root / name
    return require_file(root / ENTRY_FILES[0], LAYOUT)


def _image_index(root: Path) -> dict[str, Path]:
    """Every PNG below `root` by file name (the NIH release spreads them over 12 folders)."""
    index: dict[str, Path] = {}
    for folder, _, files in os.walk(root):
        for name in files:
            if name.lower().endswith(".png"):
                index.setdefault(name, Path(folder) / name)
    return index


def _findings(table: Table, row: Row) -> set[str]:
    column = "Finding Labels"
    text = row.get(column)
    parts = {part.strip() for part in text.split("|")}
    unknown = sorted(p for p in parts if p not in LABELS and p != NO_FINDING)
    if not text or unknown:
        what = (
            f"{', '.join(map(repr, unknown))} is not a ChestX-ray14 label"
            if text
            else ("an empty value is not a label")
        )
        raise table.error(
            row, column, f"{what} (expected {NO_FINDING!r} or labels such as 'Nodule|Effusion')"
        )
    if NO_FINDING in parts and len(parts) > 1:
        raise table.error(row, column, f"{NO_FINDING!r} together with findings: {text!r}")
    return parts - {NO_FINDING}


def _read_boxes(
    path: Path, wanted: dict[str, tuple[Path, set[str]]], codes: Sequence[str]
) -> dict[str, list[Box | None]]:
    """Boxes per image name, one slot per requested code (merged when there are several).

    The header is `Image Index,Finding Label,Bbox [x,y,w,h],,,`: the bracketed name spans four
    CSV fields, so the coordinates are read by position, not by name.
    """
    names = ("Bbox x", "Bbox y", "Bbox w", "Bbox h")
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            records = list(csv.reader(handle))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise DatasetError(f"{path}: cannot be read as CSV ({exc})") from None
    header = [cell.strip() for cell in (records[0] if records else [])]
    if header[:2] != ["Image Index", "Finding Label"] or len(header) < 6:
        raise DatasetError(
            f"{path}: expected the header 'Image Index,Finding Label,Bbox [x,y,w,h],,,', got "
            f"{','.join(header)!r}"
        )
    table = Table(path, (*header[:2], *names), [])
    boxes: dict[str, list[Box | None]] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for line, record in enumerate(records[1:], start=2):
        if not any(cell.strip() for cell in record):
            continue
        cells = [cell.strip() for cell in record] + [""] * 6
        row = Row(line, dict(zip(table.columns, cells[:6], strict=True)))
        label = BOX_ALIASES.get(row.get("Finding Label"), row.get("Finding Label"))
        if label not in LABELS:
            raise table.error(row, "Finding Label", f"{label!r} is not a ChestX-ray14 label")
        name = row.get("Image Index")
        code = MAPPING.get(label)
        if name not in wanted or code is None or code not in codes:
            continue  # an image outside this split, or a finding nobody asked for
        image, positives = wanted[name]
        if label not in positives:
            log.warning(
                "%s, line %d: %s box on an image not labelled %s; ignored", path, line, label, label
            )
            continue
        values = [number(table, row, column) for column in names]
        if name not in sizes:
            try:
                sizes[name] = plain_image_size(image)
            except InputError as exc:
                raise DatasetError(f"{path}, line {line}: {exc}") from None
        box = pixel_box(
            table, row, names, (values[0], values[1], values[2], values[3]), sizes[name]
        )
        slots = boxes.setdefault(name, [None] * len(codes))
        k = list(codes).index(code)
        slots[k] = enclosing(slots[k], box)
    return boxes


def load_nih(
    root: Path,
    codes: Sequence[str],
    *,
    split: Split = "all",
    boxes: object = True,
    missing: object = "error",
) -> list[Example]:
    """ChestX-ray14 examples for `codes` (see the module docstring for the mapping)."""
    use_boxes = flag("boxes", boxes)
    check = ImageCheck(LAYOUT, missing_policy(missing))
    table = read_csv(_entry_file(root), COLUMNS, LAYOUT)
    selected = None if split == "all" else set(read_list(root / SPLIT_FILES[split], LAYOUT))
    index = _image_index(root)
    seen: set[str] = set()
    kept: list[tuple[Row, Path, set[str]]] = []
    lateral = 0
    for row in table.rows:
        name = row.get("Image Index")
        if not name:
            raise table.error(row, "Image Index", "empty image name")
        if name in seen:
            raise table.error(row, "Image Index", f"{name} is listed more than once")
        seen.add(name)
        if selected is not None and name not in selected:
            continue
        if VIEW in table.columns and row.get(VIEW) not in FRONTAL:
            lateral += 1
            continue
        positives = _findings(table, row)
        if not row.get("Patient ID"):
            raise table.error(row, "Patient ID", "empty patient")
        path = index.get(name, root / "images" / name)
        if check.exists(f"{table.path}, line {row.line}, column 'Image Index'", path):
            kept.append((row, path, positives))
    check.finish()
    if lateral:
        log.info("%s: %d image(s) that are not PA or AP were left out", table.path, lateral)
    found: dict[str, list[Box | None]] = {}
    if use_boxes and (root / BOX_FILE).is_file():
        wanted = {row.get("Image Index"): (path, positives) for row, path, positives in kept}
        found = _read_boxes(root / BOX_FILE, wanted, codes)
    codes_by_label = {label: code for label, code in MAPPING.items() if code in codes}
    examples = []
    for row, path, positives in kept:
        name = row.get("Image Index")
        mapped = {codes_by_label[label] for label in positives if label in codes_by_label}
        examples.append(
            Example(
                path=path,
                study_instance_uid=name,
                patient_id=row.get("Patient ID"),
                labels=tuple(int(code in mapped) for code in codes),
                details=details(row, layout=LAYOUT),
                boxes=tuple(found.get(name, [None] * len(codes))),
            )
        )
    return examples
