"""Training data: splits keep patients apart, caches are real.

The cache must be provably used, or every epoch would silently pay full preprocessing. (The
labelled folder the examples come from is tested in tests/datasets/test_labelled.py.)
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

import diagnostics.train.data as data_module
from diagnostics.datasets.labelled import FINDING_CODES, load_labelled_folder
from diagnostics.datasets.records import Example
from diagnostics.dicom import DicomImage, read_instance
from diagnostics.errors import DatasetError
from diagnostics.preprocess import Augmentation, PreprocessSpec, preprocess_image
from diagnostics.synth.study import StudyTruth, SynthConfig, generate
from diagnostics.train.data import CachedDataset, split_by_patient

CONFIG = SynthConfig(rows=96, columns=96, spacing_mm=4.0)
SPEC = PreprocessSpec(size=(64, 64))
STUDIES = 12


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[StudyTruth]]:
    folder = tmp_path_factory.mktemp("labelled")
    return folder, generate(folder, STUDIES, seed=31, config=CONFIG)


@pytest.fixture(scope="module")
def examples(generated: tuple[Path, list[StudyTruth]]) -> list[Example]:
    return load_labelled_folder(generated[0], FINDING_CODES)


# ---- split_by_patient -----------------------------------------------------------------------


def _fake_examples(count: int) -> list[Example]:
    """Every third patient has two studies, so a study-level split would leak patients."""
    patients = [f"P{i // 2 if i % 6 < 2 else i}" for i in range(count)]
    return [
        Example(path=Path(f"{i}.dcm"), study_instance_uid=f"1.2.{i}", patient_id=p, labels=(0,))
        for i, p in enumerate(patients)
    ]


def test_split_keeps_each_patient_on_one_side() -> None:
    examples = _fake_examples(200)
    train, validation = split_by_patient(examples, 0.25, seed=1)
    assert not {e.patient_id for e in train} & {e.patient_id for e in validation}
    assert sorted(e.study_instance_uid for e in train + validation) == sorted(
        e.study_instance_uid for e in examples
    )


def test_split_roughly_respects_the_fraction() -> None:
    examples = _fake_examples(200)
    for seed in range(3):
        _, validation = split_by_patient(examples, 0.25, seed=seed)
        assert 0.15 <= len(validation) / len(examples) <= 0.35


def test_split_is_deterministic_and_depends_on_the_seed() -> None:
    examples = _fake_examples(200)
    first = split_by_patient(examples, 0.2, seed=4)
    assert split_by_patient(examples, 0.2, seed=4) == first
    assert split_by_patient(list(reversed(examples)), 0.2, seed=4)[1] == list(
        reversed(first[1])
    )  # a patient's side does not depend on the order of the list
    assert split_by_patient(examples, 0.2, seed=5)[1] != first[1]


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_split_fraction_outside_0_1_is_refused(fraction: float) -> None:
    with pytest.raises(DatasetError, match="validation fraction"):
        split_by_patient(_fake_examples(20), fraction, seed=0)


def test_split_that_leaves_a_side_empty_is_refused() -> None:
    one_patient = [
        Example(Path(f"{i}.dcm"), f"1.2.{i}", patient_id="P", labels=(0,)) for i in range(10)
    ]
    with pytest.raises(DatasetError, match="one side empty"):
        split_by_patient(one_patient, 0.5, seed=0)


# ---- CachedDataset --------------------------------------------------------------------------


@pytest.fixture()
def reads(monkeypatch: pytest.MonkeyPatch) -> list[Path | bytes]:
    """Record every DICOM decode the dataset makes (the real reader still does the work)."""
    calls: list[Path | bytes] = []
    real = read_instance

    def counting(source: Path | bytes) -> DicomImage:
        calls.append(source)  # a path, or the bytes a cached run already read
        return real(source)

    monkeypatch.setattr(data_module, "read_instance", counting)
    return calls


def test_items_have_the_model_shape_and_their_labels(examples: list[Example]) -> None:
    dataset = CachedDataset(examples[:4], SPEC, train=False)
    assert len(dataset) == 4
    for index, example in enumerate(examples[:4]):
        image, labels, _ = dataset[index]
        assert image.shape == (1, 64, 64) and image.dtype == torch.float32
        assert labels.tolist() == list(example.labels)
    rgb = CachedDataset(examples[:1], SPEC.model_copy(update={"channels": 3}), train=False)
    assert rgb[0][0].shape == (3, 64, 64)


def test_training_sees_what_serving_sees(examples: list[Example]) -> None:
    """The cached float16 input equals the serving preprocessing, up to float16 rounding."""
    dataset = CachedDataset(examples[:3], SPEC, train=False)
    for index, example in enumerate(examples[:3]):
        served = preprocess_image(read_instance(example.path), SPEC)
        np.testing.assert_allclose(dataset[index][0].numpy(), served.numpy(), atol=1e-3)


def test_disk_cache_is_written_then_read_instead_of_decoding(
    examples: list[Example], tmp_path: Path, reads: list[Path | bytes]
) -> None:
    cache = tmp_path / "cache"
    first = CachedDataset(examples[:5], SPEC, train=False, cache_dir=cache)
    assert len(reads) == 5
    assert len(list(cache.glob("*.npy"))) == 5
    assert not list(cache.glob("*.tmp*"))  # written atomically, nothing left over
    reads.clear()
    again = CachedDataset(examples[:5], SPEC, train=False, cache_dir=cache)
    assert reads == []
    for a, b in zip(first.arrays, again.arrays, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_poisoned_cache_entry_is_what_the_dataset_uses(
    examples: list[Example], tmp_path: Path, reads: list[Path | bytes]
) -> None:
    """Proof the cache is read: replace an entry and the dataset serves the replacement."""
    cache = tmp_path / "cache"
    CachedDataset(examples[:1], SPEC, train=False, cache_dir=cache)
    (entry,) = cache.glob("*.npy")
    np.save(entry, np.full((1, 64, 64), 0.25, dtype=np.float16), allow_pickle=False)
    dataset = CachedDataset(examples[:1], SPEC, train=False, cache_dir=cache)
    assert torch.equal(dataset[0][0], torch.full((1, 64, 64), 0.25))


def test_an_unreadable_cache_entry_is_recomputed_and_replaced(
    examples: list[Example],
    tmp_path: Path,
    reads: list[Path | bytes],
    caplog: pytest.LogCaptureFixture,
) -> None:
    cache = tmp_path / "cache"
    good = CachedDataset(examples[:1], SPEC, train=False, cache_dir=cache).arrays[0]
    (entry,) = cache.glob("*.npy")
    entry.write_bytes(entry.read_bytes()[:60])  # truncated mid-header
    reads.clear()
    with caplog.at_level(logging.WARNING, logger=data_module.__name__):
        dataset = CachedDataset(examples[:1], SPEC, train=False, cache_dir=cache)
    assert "unreadable cache entry" in caplog.text
    assert len(reads) == 1
    np.testing.assert_array_equal(dataset.arrays[0], good)
    np.testing.assert_array_equal(np.load(entry), good)


def test_cache_key_ignores_augmentation_but_not_the_deterministic_spec(
    examples: list[Example], tmp_path: Path, reads: list[Path | bytes]
) -> None:
    cache = tmp_path / "cache"
    CachedDataset(examples[:2], SPEC, train=False, cache_dir=cache)
    reads.clear()
    other_augmentation = SPEC.model_copy(update={"augmentation": Augmentation(probability=0.1)})
    CachedDataset(examples[:2], other_augmentation, train=True, cache_dir=cache)
    assert reads == []
    smaller = SPEC.model_copy(update={"size": (48, 48)})
    CachedDataset(examples[:2], smaller, train=False, cache_dir=cache)
    assert len(reads) == 2
    assert len(list(cache.glob("*.npy"))) == 4


def _items(dataset: CachedDataset, count: int = 3) -> list[torch.Tensor]:
    return [dataset[index][0] for index in range(count)]


def test_augmentation_is_reproducible_after_reseed(examples: list[Example]) -> None:
    spec = SPEC.model_copy(update={"augmentation": Augmentation(probability=1.0)})
    dataset = CachedDataset(examples[:3], spec, train=True, seed=0)
    dataset.reseed(11)
    first = _items(dataset)
    dataset.reseed(11)
    again = _items(dataset)
    dataset.reseed(12)
    other = _items(dataset)
    for a, b, c in zip(first, again, other, strict=True):
        assert torch.equal(a, b)
        assert not torch.equal(a, c)
        assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0  # clamped after noise


def test_evaluation_items_are_not_augmented(examples: list[Example]) -> None:
    spec = SPEC.model_copy(update={"augmentation": Augmentation(probability=1.0)})
    dataset = CachedDataset(examples[:2], spec, train=False)
    dataset.reseed(3)
    for index in range(2):
        expected = torch.from_numpy(dataset.arrays[index].astype(np.float32))
        assert torch.equal(dataset[index][0], expected)
        assert torch.equal(dataset[index][0], expected)  # and the same every time
