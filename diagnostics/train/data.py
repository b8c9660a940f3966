"""Training data: patient-level splits and a cached, augmenting dataset of `Example`s.

Every layout (the labelled folder of `diagnostics.datasets.labelled`, NIH, RSNA, CheXpert,
COVID collections) is read by `diagnostics.datasets` into `Example`s. Images go through the same
ingestion and preprocessing code as serving; PNG and JPEG files are decoded by
`diagnostics.images` into the same `DicomImage` first. The deterministic part of preprocessing
is done once and cached (in memory, and optionally on disk keyed by file content and spec), so
each epoch only pays for the seeded random augmentation.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from diagnostics.datasets.records import Example
from diagnostics.dicom import read_instance
from diagnostics.errors import DatasetError, InputError
from diagnostics.images import plain_image_kind, read_image
from diagnostics.preprocess import (
    PreprocessSpec,
    augment_transforms,
    preprocess_image,
    to_model_input,
)

log = logging.getLogger(__name__)


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
        if progress and sys.stderr.isatty():  # a bar only on a terminal, and it stays there
            from tqdm import tqdm

            iterator = tqdm(self.examples, desc="preprocess", unit="study", leave=True)
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
