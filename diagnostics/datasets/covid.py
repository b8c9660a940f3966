"""COVID-19 chest X-ray collections: ieee8023 `metadata.csv` and COVIDx split lists.

**ieee8023/covid-chestxray-dataset** (layout `covid`)::

    ROOT/metadata.csv    patientid, offset, sex, age, finding, ..., view, modality, date,
                         location, folder, filename, doi, url, license, ...
    ROOT/<folder>/<filename>     (folder is "images" for radiographs)

One row per image. `finding` is a hierarchy separated by "/" in recent versions
("Pneumonia/Viral/COVID-19") and a single term in early ones ("COVID-19"); several findings may
be joined by "|". Mapping, by term anywhere in the hierarchy:

    Pneumonia -> pneumonia            COVID-19 -> covid19
    No Finding -> negative for both   todo, Unknown -> left out (not labelled yet)

Every other diagnosis (Tuberculosis, ...) is negative for both. Only X-ray rows with a frontal
view (PA, or AP in any of its variants: "AP Supine", "AP semi erect") are kept. An image is a
study; patients come from `patientid`; there is no official split, so `split="train"`/`"test"`
hold out `test_fraction` of the patients by a hash of patientid.

**COVIDx** (layout `covidx`)::

    ROOT/train.txt, ROOT/test.txt   "patientid filename label source" per line, space-separated
    ROOT/train/<filename>, ROOT/test/<filename>

Labels: `COVID-19` -> covid19 and pneumonia positive (COVID-19 pneumonia), `pneumonia` ->
pneumonia only, `normal` -> neither (the three-class lists, COVIDx v1-v9A); `positive` /
`negative` -> covid19 only, pneumonia unknown (the binary lists, COVIDx v7B and CXR-2). The
lists are the official split, meant to keep patients apart; that is checked whenever both lists
are present, because a patient in both would inflate every test metric. A patient is the pair
(source, patientid), since the merged sources number their patients independently. A shared
patient stops loading unless the option `overlap = "drop"` removes that patient's images from
training (the official test set stays whole). The list file names can be changed with the options
`train_list` and `test_list` (e.g. "train_COVIDx9A.txt").

Intensity, both layouts: PNG/JPEG stored for display, brighter = denser (MONOCHROME2); colour
files are converted to luminance.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from diagnostics.datasets.common import (
    ImageCheck,
    Row,
    Split,
    Table,
    choice,
    details,
    fraction,
    in_split,
    missing_policy,
    read_csv,
    read_lines,
)
from diagnostics.datasets.records import UNKNOWN_LABEL, Example
from diagnostics.errors import ConfigurationError, DatasetError

log = logging.getLogger(__name__)

COVID_LAYOUT = "covid"
COVIDX_LAYOUT = "covidx"
METADATA = "metadata.csv"
COLUMNS = ("patientid", "finding", "view", "modality", "folder", "filename")
TERMS = {"Pneumonia": "pneumonia", "COVID-19": "covid19"}
NO_FINDING = "No Finding"
UNLABELLED = ("todo", "Unknown")
COVIDX_LABELS: dict[str, dict[str, int]] = {
    "COVID-19": {"covid19": 1, "pneumonia": 1},
    "pneumonia": {"covid19": 0, "pneumonia": 1},
    "normal": {"covid19": 0, "pneumonia": 0},
    "positive": {"covid19": 1, "pneumonia": UNKNOWN_LABEL},
    "negative": {"covid19": 0, "pneumonia": UNKNOWN_LABEL},
}
CODES = ("pneumonia", "covid19")


def _frontal(view: str) -> bool:
    upper = view.upper()
    return upper == "PA" or upper == "AP" or upper.startswith("AP ")


def _terms(table: Table, row: Row) -> set[str] | None:
    """The finding's terms at every level, or None for rows not labelled yet."""
    text = row.get("finding")
    if not text:
        raise table.error(row, "finding", "empty finding (write 'No Finding' for a normal image)")
    terms = {term.strip() for part in text.split("|") for term in part.split("/")}
    if terms & set(UNLABELLED):
        return None
    if "" in terms:
        raise table.error(row, "finding", f"{text!r} has an empty level")
    if NO_FINDING in terms and len(terms) > 1:
        raise table.error(row, "finding", f"{NO_FINDING!r} together with findings: {text!r}")
    return terms


def load_covid(
    root: Path,
    codes: Sequence[str],
    *,
    split: Split = "all",
    test_fraction: object = 0.2,
    missing: object = "error",
) -> list[Example]:
    """ieee8023 covid-chestxray-dataset examples for `codes` (pneumonia, covid19)."""
    held_out = fraction("test_fraction", test_fraction)
    check = ImageCheck(COVID_LAYOUT, missing_policy(missing))
    table = read_csv(root / METADATA, COLUMNS, COVID_LAYOUT)
    examples: list[Example] = []
    seen: dict[str, int] = {}
    skipped = {"not X-ray": 0, "not frontal": 0, "not labelled": 0}
    for row in table.rows:
        if row.get("modality").lower() != "x-ray":
            skipped["not X-ray"] += 1
            continue
        if not _frontal(row.get("view")):
            skipped["not frontal"] += 1
            continue
        terms = _terms(table, row)
        if terms is None:
            skipped["not labelled"] += 1
            continue
        patient, filename = row.get("patientid"), row.get("filename")
        if not patient:
            raise table.error(row, "patientid", "empty patient")
        if not filename:
            raise table.error(row, "filename", "empty file name")
        if filename in seen:
            raise table.error(row, "filename", f"{filename} is also on line {seen[filename]}")
        seen[filename] = row.line
        if not in_split(patient, split, held_out, COVID_LAYOUT):
            continue
        path = root / (row.get("folder") or "images") / filename
        if not check.exists(f"{table.path}, line {row.line}, column 'filename'", path):
            continue
        positive = {TERMS[term] for term in terms if term in TERMS}
        examples.append(
            Example(
                path=path,
                study_instance_uid=filename,
                patient_id=patient,
                labels=tuple(int(code in positive) for code in codes),
                details=details(row, layout=COVID_LAYOUT),
                boxes=(None,) * len(codes),
            )
        )
    check.finish()
    log.info("%s: left out %s", table.path, skipped)
    return examples


class _Entry(NamedTuple):
    """One line of a COVIDx list."""

    number: int
    patient: str
    filename: str
    label: str
    source: str
    """"" in the three-field form, which has no source column."""

    @property
    def key(self) -> tuple[str, str]:
        """Who the patient is: the merged sources number their patients independently."""
        return self.source, self.patient


def _parse_line(path: Path, number: int, line: str) -> _Entry:
    """The label is the last field, or the one before the source."""
    fields = line.split()
    if len(fields) >= 3 and fields[-1] in COVIDX_LABELS:
        return _Entry(number, " ".join(fields[:-2]), fields[-2], fields[-1], "")
    if len(fields) >= 4 and fields[-2] in COVIDX_LABELS:
        return _Entry(number, " ".join(fields[:-3]), fields[-3], fields[-2], fields[-1])
    label = fields[-2] if len(fields) >= 4 else (fields[-1] if fields else "")
    raise DatasetError(
        f"{path}, line {number}, column 'label': expected 'patientid filename label source' "
        f"with label one of {', '.join(COVIDX_LABELS)}, got {label!r} in {line!r}"
    )


def _read_list(path: Path) -> list[_Entry]:
    lines = enumerate(read_lines(path, COVIDX_LAYOUT), start=1)
    return [_parse_line(path, number, line) for number, line in lines if line.strip()]


def load_covidx(
    root: Path,
    codes: Sequence[str],
    *,
    split: Split = "all",
    train_list: object = "train.txt",
    test_list: object = "test.txt",
    missing: object = "error",
    overlap: object = "error",
) -> list[Example]:
    """COVIDx examples for `codes` (pneumonia, covid19) from the official split lists."""
    lists = {"train": train_list, "test": test_list}
    for option, value in (("train_list", train_list), ("test_list", test_list)):
        if not isinstance(value, str) or not value or "/" in value:
            raise ConfigurationError(f"option {option} must be a file name, not {value!r}")
    drop_from_train = choice("overlap", overlap, ("error", "drop")) == "drop"
    paths = {part: root / str(name) for part, name in lists.items()}
    parts = ("train", "test") if split == "all" else (split,)
    # Each list is read once: the requested ones (which must exist), and the other one when it
    # exists, for the overlap check.
    entries = {
        part: _read_list(path) for part, path in paths.items() if part in parts or path.is_file()
    }
    shared = _shared_patients(entries, paths, drop_from_train)
    check = ImageCheck(COVIDX_LAYOUT, missing_policy(missing))
    examples: list[Example] = []
    seen: dict[str, str] = {}
    for part in parts:
        path = paths[part]
        for entry in entries[part]:
            if part == "train" and entry.key in shared:
                continue
            where = f"{path}, line {entry.number}"
            if entry.filename in seen:
                raise DatasetError(
                    f"{where}: {entry.filename} is also listed at {seen[entry.filename]}"
                )
            seen[entry.filename] = where
            image = root / part / entry.filename
            if not check.exists(f"{where}, column 'filename'", image):
                continue
            values = COVIDX_LABELS[entry.label]
            examples.append(
                Example(
                    path=image,
                    study_instance_uid=entry.filename,
                    patient_id=entry.patient,
                    labels=tuple(values[code] for code in codes),
                    details={"layout": COVIDX_LAYOUT, "label": entry.label, "list": path.name},
                    boxes=(None,) * len(codes),
                )
            )
    check.finish()
    return examples


def _shared_patients(
    entries: dict[str, list[_Entry]], paths: dict[str, Path], drop_from_train: bool
) -> set[tuple[str, str]]:
    """(source, patient) pairs listed in both splits (checked only when both lists were read);
    an error unless they are to be dropped from training."""
    if len(entries) < 2:
        return set()
    shared = {e.key for e in entries["train"]} & {e.key for e in entries["test"]}
    train, test = paths["train"], paths["test"]
    if shared and not drop_from_train:
        named = sorted(f"{patient} ({source})" if source else patient for source, patient in shared)
        some = ", ".join(named[:5]) + (", ..." if len(shared) > 5 else "")
        raise DatasetError(
            f"{len(shared)} patient(s) are in both {train.name} and {test.name} ({some}); test "
            'metrics would be inflated. Fix the lists, or set the option overlap = "drop" to '
            "leave those patients out of training"
        )
    if shared:
        log.warning("covidx: left %d patient(s) of %s out of training", len(shared), test.name)
    return shared
