"""CheXpert: JPEG images, `train.csv` and `valid.csv` with 1 / 0 / -1 / blank labels.

Layout (CheXpert-v1.0 or CheXpert-v1.0-small)::

    ROOT/train.csv, ROOT/valid.csv
        Path, Sex, Age, Frontal/Lateral, AP/PA, No Finding, Enlarged Cardiomediastinum,
        Cardiomegaly, Lung Opacity, Lung Lesion, Edema, Consolidation, Pneumonia, Atelectasis,
        Pneumothorax, Pleural Effusion, Pleural Other, Fracture, Support Devices
    Path = CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg

`Path` starts with the dataset's own folder name, so it is looked up below ROOT's parent, below
ROOT, and below ROOT without that first component, in that order.

Label values: 1.0 positive, 0.0 negative, -1.0 uncertain, blank not mentioned. Blank counts as
negative (the CheXpert convention: the report did not mention it). Uncertain follows the option
`uncertain`:

- `ignore` (default): the label is unknown (`UNKNOWN_LABEL`, -1) for that finding only; the
  training loss, validation AUROC, calibration, metrics and `diagnostics compare` skip it, and
  the study still counts for every other finding. This is CheXpert's "U-Ignore".
- `ones` / `zeros`: uncertain counts as positive / negative ("U-Ones" / "U-Zeros").

Mapping to our coded findings:

    Cardiomegaly -> cardiomegaly      Consolidation -> consolidation    Pneumonia -> pneumonia
    Atelectasis -> atelectasis        Pneumothorax -> pneumothorax      Pleural Effusion -> effusion
    (Lung Lesion, which mixes nodules and masses, and the other columns are not mapped)

Only frontal images are kept (`Frontal/Lateral`), one per study (the first in the file), so
an example is a study as elsewhere. Patients come from the `patientNNNNN` part of the path.
`split="train"` reads train.csv, `"test"` valid.csv (the radiologist-labelled validation set),
`"all"` both. Intensity: JPEGs stored for display, brighter = denser (MONOCHROME2).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from diagnostics.datasets.common import (
    ImageCheck,
    Row,
    Split,
    Table,
    choice,
    details,
    missing_policy,
    read_csv,
)
from diagnostics.datasets.records import UNKNOWN_LABEL, Example

log = logging.getLogger(__name__)

LAYOUT = "chexpert"
FILES = {"train": "train.csv", "test": "valid.csv"}
MAPPING = {
    "Cardiomegaly": "cardiomegaly",
    "Consolidation": "consolidation",
    "Pneumonia": "pneumonia",
    "Atelectasis": "atelectasis",
    "Pneumothorax": "pneumothorax",
    "Pleural Effusion": "effusion",
}
COLUMN_OF = {code: column for column, code in MAPPING.items()}
VIEW = "Frontal/Lateral"
POLICIES = ("ignore", "ones", "zeros")
_VALUES = {"1.0": 1, "1": 1, "0.0": 0, "0": 0, "-1.0": -1, "-1": -1, "": 0}
_PATIENT = re.compile(r"^patient\d+$")
_STUDY = re.compile(r"^study\d+$")


def _ids(table: Table, row: Row) -> tuple[str, str]:
    """(patient, study) from a path such as .../patient00001/study1/view1_frontal.jpg."""
    parts = PurePosixPath(row.get("Path").replace("\\", "/")).parts
    for i, part in enumerate(parts[:-2]):
        if _PATIENT.match(part) and _STUDY.match(parts[i + 1]):
            return part, f"{part}/{parts[i + 1]}"
    raise table.error(row, "Path", f"{row.get('Path')!r} has no patientNNNNN/studyN folders")


def _locate(root: Path, relative: str) -> Path:
    """Where the image is: ROOT's parent, ROOT, or ROOT without the path's first folder."""
    parts = PurePosixPath(relative.replace("\\", "/")).parts
    candidates = [root.parent.joinpath(*parts), root.joinpath(*parts), root.joinpath(*parts[1:])]
    return next((path for path in candidates if path.is_file()), candidates[0])


def _label(table: Table, row: Row, code: str, policy: str) -> int:
    column = COLUMN_OF[code]
    text = row.get(column)
    if text not in _VALUES:
        raise table.error(row, column, f"{text!r} is not 1.0, 0.0, -1.0 or blank")
    value = _VALUES[text]
    if value == -1:
        return {"ignore": UNKNOWN_LABEL, "ones": 1, "zeros": 0}[policy]
    return value


def load_chexpert(
    root: Path,
    codes: Sequence[str],
    *,
    split: Split = "all",
    uncertain: object = "ignore",
    missing: object = "error",
) -> list[Example]:
    """CheXpert examples for `codes` under the `uncertain` policy (see the module docstring)."""
    policy = choice("uncertain", uncertain, POLICIES)
    check = ImageCheck(LAYOUT, missing_policy(missing))
    names = [FILES["train"], FILES["test"]] if split == "all" else [FILES[split]]
    required = ("Path", VIEW, *(COLUMN_OF[code] for code in codes))
    studies: dict[str, str] = {}
    examples, lateral, extra = [], 0, 0
    for name in names:
        table = read_csv(root / name, required, LAYOUT)
        for row in table.rows:
            view = row.get(VIEW)
            if view not in ("Frontal", "Lateral"):
                raise table.error(row, VIEW, f"{view!r} is neither 'Frontal' nor 'Lateral'")
            if view == "Lateral":
                lateral += 1
                continue
            patient, study = _ids(table, row)
            where = f"{table.path}, line {row.line}"
            if study in studies:
                extra += 1  # a second frontal image of a study: one image per study
                continue
            studies[study] = where
            labels = tuple(_label(table, row, code, policy) for code in codes)
            path = _locate(root, row.get("Path"))
            if not check.exists(f"{where}, column 'Path'", path):
                continue
            examples.append(
                Example(
                    path=path,
                    study_instance_uid=study,
                    patient_id=patient,
                    labels=labels,
                    details=details(row, layout=LAYOUT, source=name),
                    boxes=(None,) * len(codes),
                )
            )
    check.finish()
    log.info("%s: left out %d lateral and %d extra frontal images", root, lateral, extra)
    return examples
