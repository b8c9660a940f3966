"""Labelled datasets: a folder of DICOM studies plus labels.csv (the `diagnostics synth` contract).

Other layouts (NIH, RSNA, CheXpert, COVID collections) are read by `diagnostics.datasets` into
the same `Example`s. Images go through the same ingestion and preprocessing code as serving;
PNG and JPEG files are decoded by `diagnostics.images` into the same `DicomImage` first. The
deterministic part of preprocessing is done once and cached (in memory, and optionally on disk
keyed by file content and spec), so each epoch only pays for the seeded random augmentation.
"""

from __future__ import annotations

import csv
import hashlib
import logging
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from diagnostics.dicom import InstanceInfo, read_instance, scan
from diagnostics.errors import DatasetError, InputError
from diagnostics.images import plain_image_kind, read_image
from diagnostics.preprocess import (
    PreprocessSpec,
    augment_transforms,
    preprocess_image,
    to_model_input,
)

log = logging.getLogger(__name__)


UNKNOWN_LABEL = -1
"""A label that is not known for this example (e.g. CheXpert "uncertain" under the `ignore`
policy): training loss, validation AUROC, calibration and metrics skip it for that finding."""


@dataclass(frozen=True)
class Example:
    """One labelled study: the file to read, who it belongs to, and its 0/1 labels.

    A label may also be `UNKNOWN_LABEL` (-1). For layouts without DICOM UIDs,
    `study_instance_uid` holds the layout's own identifier of the study (e.g. an image name).
    """

    path: Path
    study_instance_uid: str
    patient_id: str
    labels: tuple[int, ...]
    details: dict[str, str] = field(default_factory=dict, compare=False)
    boxes: tuple[tuple[float, float, float, float] | None, ...] = ()
    """Per finding, where it is as (x0, y0, x1, y1) fractions of the image, when known."""


Box = tuple[float, float, float, float]


def finding_boxes(
    row: dict[str, str], codes: Sequence[str], info: InstanceInfo
) -> tuple[Box | None, ...]:
    """Locations from the synth label columns, as fractions of the image (None when unknown).

    Nodules give a centre and a diameter, consolidation a bounding box; other layouts can add
    their own columns. Training uses these to point each finding's CAM at the right place.
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
        if code == "nodule" and row.get("nodule") == "1" and spacing:
            x, y, d = number("nodule_x"), number("nodule_y"), number("nodule_diameter_mm")
            if x is not None and y is not None and d is not None:
                r = d / 2 / spacing
                box = (x - r, y - r, x + r, y + r)
        elif code == "consolidation" and row.get("consolidation") == "1":
            corners = [number(f"consolidation_{c}") for c in ("x0", "y0", "x1", "y1")]
            if all(c is not None for c in corners):
                box = (corners[0], corners[1], corners[2], corners[3])  # type: ignore[assignment]
        if box is not None:
            w, h = info.columns, info.rows
            box = (box[0] / w, box[1] / h, box[2] / w, box[3] / h)
        boxes.append(box)
    return tuple(boxes)


def _read_labels(path: Path, codes: Sequence[str]) -> list[dict[str, str]]:
    if not path.is_file():
        raise DatasetError(f"{path}: no labels file (expected labels.csv beside the studies)")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        columns = reader.fieldnames or []
        missing = [c for c in ("study_instance_uid", *codes) if c not in columns]
        if missing:
            raise DatasetError(f"{path}: missing column(s) {', '.join(missing)}")
        rows = list(reader)
    for number, row in enumerate(rows, start=2):
        for code in codes:
            if row[code] not in ("0", "1"):
                raise DatasetError(
                    f"{path}, line {number}: {code} must be 0 or 1, not {row[code]!r}"
                )
    return rows


def load_labelled_folder(folder: Path, codes: Sequence[str]) -> list[Example]:
    """Match labels.csv rows to the DICOM studies under `folder` by Study Instance UID.

    Every labelled study must have an image and every image study a label: a mismatch usually
    means the wrong labels file, and training on it would silently learn noise.
    """
    rows = _read_labels(folder / "labels.csv", codes)
    studies, refused = scan([folder])
    for path, exc in refused:
        if path.name != "labels.csv":
            log.warning("%s: skipped: %s", path, exc)
    by_uid = {study.study_instance_uid: study for study in studies}
    labelled = {row["study_instance_uid"] for row in rows}
    if len(labelled) != len(rows):
        counts = Counter(row["study_instance_uid"] for row in rows)
        repeated = next(uid for uid, count in counts.items() if count > 1)
        raise DatasetError(f"{folder}/labels.csv lists study {repeated} more than once")
    unlabelled = sorted(set(by_uid) - labelled)
    absent = [row["study_instance_uid"] for row in rows if row["study_instance_uid"] not in by_uid]
    if absent:
        raise DatasetError(
            f"{folder}/labels.csv lists {len(absent)} stud(ies) with no DICOM file under "
            f"{folder}, e.g. {absent[0]}"
        )
    if unlabelled:
        raise DatasetError(
            f"{len(unlabelled)} stud(ies) under {folder} have no row in labels.csv, "
            f"e.g. {unlabelled[0]}"
        )
    examples = []
    for row in rows:
        study = by_uid[row["study_instance_uid"]]
        first = study.instances[0]
        examples.append(
            Example(
                path=first.path,
                study_instance_uid=study.study_instance_uid,
                patient_id=row.get("patient_id") or study.patient_id,
                labels=tuple(int(row[code]) for code in codes),
                details=row,
                boxes=finding_boxes(row, codes, first.info),
            )
        )
    return examples


def split_by_patient(
    examples: Sequence[Example], validation_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Deterministic patient-level split: no patient has studies on both sides."""
    if not 0.0 < validation_fraction < 1.0:
        raise DatasetError(f"validation fraction must be in (0, 1), not {validation_fraction}")

    def bucket(patient: str) -> float:
        digest = hashlib.sha256(f"{seed}:{patient}".encode()).digest()
        return int.from_bytes(digest[:8], "big") / 2**64

    train = [e for e in examples if bucket(e.patient_id) >= validation_fraction]
    validation = [e for e in examples if bucket(e.patient_id) < validation_fraction]
    if not train or not validation:
        raise DatasetError(
            f"splitting {len(examples)} studies by patient left one side empty; add more data"
        )
    return train, validation


def _cache_key(data: bytes, spec: PreprocessSpec) -> str:
    digest = hashlib.sha256(data)
    digest.update(spec.model_dump_json(exclude={"augmentation"}).encode())
    return digest.hexdigest()[:32]


def _preprocess(source: Path | bytes, path: Path, spec: PreprocessSpec) -> np.ndarray:
    try:
        # PNG and JPEG (the public research layouts) by content; everything else is DICOM.
        image = read_image(source) if plain_image_kind(source) else read_instance(source)
    except InputError as exc:
        message = str(exc)  # name the file once, whether or not the reader already did
        raise DatasetError(
            message if message.startswith(str(path)) else f"{path}: {message}"
        ) from None
    return np.asarray(preprocess_image(image, spec)[:1], dtype=np.float16)


def preprocess_file(path: Path, spec: PreprocessSpec, cache_dir: Path | None = None) -> np.ndarray:
    """Deterministic preprocessing of one file to float16 (1, H, W), through the disk cache.

    The cache is keyed by the file's content, so the bytes are read once and, on a miss,
    decoded from memory rather than read from disk a second time.
    """
    if cache_dir is None:
        return _preprocess(path, path, spec)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot be read ({exc.strerror})") from None
    cached = cache_dir / f"{_cache_key(data, spec)}.npy"
    if cached.is_file():
        try:
            return np.asarray(np.load(cached, allow_pickle=False))
        except (OSError, ValueError, zlib.error):
            log.warning("%s: unreadable cache entry; recomputing", cached)
    array = _preprocess(data, path, spec)
    cached.parent.mkdir(parents=True, exist_ok=True)
    tmp = cached.with_suffix(".tmp.npy")
    np.save(tmp, array, allow_pickle=False)
    tmp.replace(cached)
    return array


class CachedDataset(Dataset[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]):
    """Preprocessed examples held in memory (float16), augmented on the fly when training.

    Items are (image (C, H, W), labels (K,), boxes (K, 4)): boxes hold each finding's location
    as fractions of the image, NaN where it is absent or unknown.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        spec: PreprocessSpec,
        *,
        train: bool,
        seed: int = 0,
        cache_dir: Path | None = None,
        progress: bool = False,
    ) -> None:
        self.examples = list(examples)
        self.spec = spec
        self.train = train
        iterator = self.examples
        if progress:
            from tqdm import tqdm

            iterator = tqdm(self.examples, desc="preprocess", unit="study", leave=False)
        self.arrays = [preprocess_file(e.path, spec, cache_dir) for e in iterator]
        self.labels = torch.tensor([e.labels for e in self.examples], dtype=torch.float32)
        findings = len(self.examples[0].labels) if self.examples else 0
        self.boxes = torch.full((len(self.examples), findings, 4), float("nan"))
        for n, example in enumerate(self.examples):
            for k, box in enumerate(example.boxes):
                if box is not None:
                    self.boxes[n, k] = torch.tensor(box)
        self.augment = augment_transforms(spec) if train else None
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Fix the augmentation stream, e.g. per epoch as (seed, epoch), so resumes reproduce."""
        if self.augment is not None:
            self.augment.set_random_state(seed=seed % (2**32))

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        array = torch.from_numpy(self.arrays[index].astype(np.float32))
        if self.augment is not None:
            array = torch.as_tensor(self.augment(array)).as_subclass(torch.Tensor)
            array = array.clamp(0.0, 1.0)
        return to_model_input(array, self.spec), self.labels[index], self.boxes[index]
