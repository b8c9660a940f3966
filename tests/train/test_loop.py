"""The training loop: checkpoints are written, safe to load, and resuming is exact.

A resumed run that drifts from an uninterrupted one makes every reported result depend on when
the machine happened to restart; a checkpoint loaded with full unpickling lets a file run code.
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

import diagnostics.train.loop as loop_module
from diagnostics.datasets.labelled import FINDING_CODES, load_labelled_folder
from diagnostics.errors import CheckpointError
from diagnostics.nets import CamNet, build_model
from diagnostics.preprocess import PreprocessSpec
from diagnostics.synth.study import SynthConfig, generate
from diagnostics.train.data import CachedDataset, split_by_patient
from diagnostics.train.loop import (
    BEST,
    LAST,
    FitResult,
    fit,
    load_checkpoint,
    load_weights,
    location_loss,
    model_from_checkpoint,
    predict_logits,
    save_checkpoint,
)
from diagnostics.train.recipe import TrainingConfig

SPEC = PreprocessSpec(size=(64, 64))
FINDINGS = list(FINDING_CODES)
SEED = 3


class Interrupted(Exception):
    """Raised by the injected fault that stops a run as a crash or Ctrl-C would."""


class Arbitrary:
    """Any class outside torch's allow-list; unpickling it is what weights_only forbids."""

    def __init__(self) -> None:
        self.value = 42


class Payload:
    """A pickle that creates a file when loaded: proof of whether loading executed it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[Path]]:
        return pathlib.Path.touch, (self.marker,)


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> tuple[CachedDataset, CachedDataset]:
    """24 tiny synthetic studies split by patient; training ones augmented."""
    folder = tmp_path_factory.mktemp("loop-data")
    generate(folder, 24, seed=41, config=SynthConfig(rows=96, columns=96, spacing_mm=4.0))
    train, validation = split_by_patient(load_labelled_folder(folder, FINDINGS), 0.3, seed=0)
    return (
        CachedDataset(train, SPEC, train=True, seed=SEED),
        CachedDataset(validation, SPEC, train=False),
    )


def _model(seed: int, name: str = "compact") -> CamNet:
    torch.manual_seed(seed)
    return build_model(name, 1, len(FINDINGS))


@pytest.fixture(autouse=True, scope="module")
def _restore_torch_threads() -> Iterator[None]:
    """`fit` sets torch's process-wide thread count from the config; give it back afterwards."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _config(epochs: int) -> TrainingConfig:
    # One thread: on a shared two-core machine, two spinning OpenMP threads run several times
    # slower than one, and the result must not depend on the thread count anyway.
    return TrainingConfig(epochs=epochs, batch_size=8, learning_rate=5e-3, patience=5, threads=1)


def _fit(
    datasets: tuple[CachedDataset, CachedDataset],
    workdir: Path,
    epochs: int,
    *,
    model: CamNet | None = None,
    resume: bool = False,
) -> FitResult:
    return fit(
        model if model is not None else _model(0),
        "compact",
        FINDINGS,
        *datasets,
        _config(epochs),
        workdir,
        seed=SEED,
        resume=resume,
    )


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def trained(
    datasets: tuple[CachedDataset, CachedDataset], tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, FitResult, CamNet]:
    """One uninterrupted 3-epoch run, shared by the tests that only read its outputs."""
    workdir = tmp_path_factory.mktemp("straight")
    model = _model(0)
    return workdir, _fit(datasets, workdir, 3, model=model), model


def test_fit_writes_last_and_best_checkpoints(trained: tuple[Path, FitResult, CamNet]) -> None:
    workdir, result, _ = trained
    last, best = load_checkpoint(workdir / LAST), load_checkpoint(workdir / BEST)
    assert result.epochs_run == 3 and len(result.history) == 3
    assert last["epoch"] == 2 and last["history"] == result.history
    assert last["architecture"] == best["architecture"] == "compact"
    assert last["findings"] == best["findings"] == FINDINGS
    assert {"optimizer", "scheduler", "best_auroc", "best_epoch"} <= last.keys()
    aurocs = [record["val_auroc"] for record in result.history]
    assert result.best_auroc == max(aurocs)
    assert best["epoch"] == result.best_epoch == aurocs.index(max(aurocs))
    assert not list(workdir.glob("*.tmp"))  # atomic writes leave nothing behind


def test_fit_leaves_the_model_with_the_best_weights(
    trained: tuple[Path, FitResult, CamNet],
) -> None:
    workdir, _, model = trained
    _assert_same_weights(model.state_dict(), load_checkpoint(workdir / BEST)["model"])
    initial = _model(0).state_dict()
    assert not torch.equal(model.head.weight, initial["head.weight"])  # it did train


def test_resume_after_an_interruption_is_exact(
    datasets: tuple[CachedDataset, CachedDataset],
    trained: tuple[Path, FitResult, CamNet],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Crash a 3-epoch run after epoch 2 is saved, resume it: same weights as the straight run."""
    genuine_save = loop_module.save_checkpoint

    def crash_after_epoch_2(path: Path, payload: dict[str, Any]) -> None:
        genuine_save(path, payload)
        if path.name == LAST and payload["epoch"] == 1:
            raise Interrupted

    monkeypatch.setattr(loop_module, "save_checkpoint", crash_after_epoch_2)
    with pytest.raises(Interrupted):
        _fit(datasets, tmp_path, 3)
    monkeypatch.undo()
    assert load_checkpoint(tmp_path / LAST)["epoch"] == 1

    # a differently initialised model proves the weights come from the checkpoint
    result = _fit(datasets, tmp_path, 3, model=_model(123), resume=True)
    straight_dir, straight, _ = trained
    assert result.epochs_run == 1
    timeless = [{k: v for k, v in epoch.items() if k != "seconds"} for epoch in result.history]
    assert timeless == [{k: v for k, v in e.items() if k != "seconds"} for e in straight.history]
    assert (result.best_epoch, result.best_auroc) == (straight.best_epoch, straight.best_auroc)
    resumed_last = load_checkpoint(tmp_path / LAST)
    straight_last = load_checkpoint(straight_dir / LAST)
    _assert_same_weights(resumed_last["model"], straight_last["model"])
    assert resumed_last["scheduler"] == straight_last["scheduler"]
    _assert_same_weights(
        load_checkpoint(tmp_path / BEST)["model"], load_checkpoint(straight_dir / BEST)["model"]
    )


def test_resuming_a_finished_run_trains_no_more(
    datasets: tuple[CachedDataset, CachedDataset],
    trained: tuple[Path, FitResult, CamNet],
    tmp_path: Path,
) -> None:
    workdir, straight, _ = trained
    for name in (LAST, BEST):
        (tmp_path / name).write_bytes((workdir / name).read_bytes())
    model = _model(7)
    result = _fit(datasets, tmp_path, 3, model=model, resume=True)
    assert result.epochs_run == 0 and result.history == straight.history
    _assert_same_weights(model.state_dict(), load_checkpoint(workdir / BEST)["model"])


def test_model_from_checkpoint_rebuilds_the_trained_model(
    datasets: tuple[CachedDataset, CachedDataset], trained: tuple[Path, FitResult, CamNet]
) -> None:
    workdir, _, model = trained
    rebuilt, payload = model_from_checkpoint(workdir / BEST, in_channels=1)
    assert payload["findings"] == FINDINGS
    validation = datasets[1]
    torch.testing.assert_close(
        torch.from_numpy(predict_logits(rebuilt, validation)),
        torch.from_numpy(predict_logits(model, validation)),
    )


# ---- refusing checkpoints -------------------------------------------------------------------


def _valid_payload() -> dict[str, Any]:
    return {"model": _model(0).state_dict(), "architecture": "compact", "findings": FINDINGS}


def test_a_checkpoint_holding_an_arbitrary_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({**_valid_payload(), "extra": Arbitrary()}, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)


def test_loading_a_checkpoint_never_runs_its_code(tmp_path: Path) -> None:
    marker, path = tmp_path / "executed", tmp_path / "evil.pt"
    torch.save({**_valid_payload(), "extra": Payload(marker)}, path)
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert not marker.exists()
    torch.load(path, weights_only=False)  # the control: unrestricted loading does run it
    assert marker.exists()


def test_a_compact_checkpoint_does_not_load_into_resnet18(tmp_path: Path) -> None:
    path = tmp_path / LAST
    save_checkpoint(path, _valid_payload())
    with pytest.raises(CheckpointError, match="'compact'"):
        load_weights(_model(0, "resnet18"), load_checkpoint(path), path)


def test_resuming_with_another_architecture_is_refused(
    datasets: tuple[CachedDataset, CachedDataset],
    trained: tuple[Path, FitResult, CamNet],
    tmp_path: Path,
) -> None:
    (tmp_path / LAST).write_bytes((trained[0] / LAST).read_bytes())
    with pytest.raises(CheckpointError, match=f"{LAST}.*architecture 'compact'"):
        _fit(datasets, tmp_path, 3, model=_model(0, "resnet18"), resume=True)


@pytest.mark.parametrize("fraction", [0.0, 0.1, 0.5, 0.99])
def test_a_truncated_checkpoint_is_refused(tmp_path: Path, fraction: float) -> None:
    path = tmp_path / LAST
    save_checkpoint(path, _valid_payload())
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(CheckpointError, match=LAST):
        load_checkpoint(path)


def test_a_missing_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / LAST)


@pytest.mark.parametrize("payload", [[1, 2, 3], {"weights": {}}, torch.zeros(3)])
def test_a_foreign_torch_file_is_refused(tmp_path: Path, payload: object) -> None:
    path = tmp_path / "foreign.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="not a checkpoint written by this project"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "change",
    [
        {"architecture": "vgg16"},
        {"architecture": None},
        {"findings": []},
        {"model": "not weights"},
        {"findings": ["nodule"]},
    ],
    ids=["unknown-arch", "no-arch", "no-findings", "weights-not-a-dict", "findings-mismatch"],
)
def test_model_from_a_checkpoint_that_cannot_be_rebuilt_is_refused(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    path = tmp_path / BEST
    save_checkpoint(path, {**_valid_payload(), **change})
    with pytest.raises(CheckpointError, match=BEST):
        model_from_checkpoint(path, in_channels=1)


def test_resume_with_a_different_schedule_length_is_refused(tmp_path: Path) -> None:
    """The cosine schedule spans the planned epochs; a changed length must not resume silently."""
    payload = {"model": {}, "scheduler": {"T_max": 3}, "epoch": 1}
    (tmp_path / "last.pt").parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, tmp_path / "last.pt")
    model = build_model("compact", 1, 3)
    with pytest.raises(CheckpointError, match="planned for 3 epochs"):
        fit(
            model,
            "compact",
            ["nodule", "consolidation", "cardiomegaly"],
            None,  # type: ignore[arg-type]  # refused before any data is touched
            None,  # type: ignore[arg-type]
            TrainingConfig(epochs=5),
            tmp_path,
            seed=0,
            resume=True,
        )


def _boxes(n: int, k: int) -> torch.Tensor:
    return torch.full((n, k, 4), float("nan"))


def test_location_loss_rewards_a_cam_that_fires_inside_the_box() -> None:
    cam = torch.full((2, 3, 10, 10), -5.0)
    boxes = _boxes(2, 3)
    boxes[0, 0] = torch.tensor([0.2, 0.2, 0.3, 0.3])
    inside, outside = cam.clone(), cam.clone()
    inside[0, 0, 2, 2] = 5.0  # cell centre (0.25, 0.25): in the box
    outside[0, 0, 8, 8] = 5.0
    assert float(location_loss(inside, boxes)) < 0.01
    assert float(location_loss(outside, boxes)) > 4.0


def test_location_loss_only_touches_the_window_of_known_boxes() -> None:
    cam = torch.zeros((1, 2, 10, 10), requires_grad=True)
    boxes = _boxes(1, 2)
    boxes[0, 1] = torch.tensor([0.6, 0.6, 0.7, 0.7])
    location_loss(cam, boxes, margin=0.0).backward()
    grad = cam.grad
    assert grad is not None
    assert float(grad[0, 0].abs().sum()) == 0.0  # finding without a box: untouched
    touched = grad[0, 1].nonzero().tolist()
    # The box grown by half a cell (the least growth): cells 5 to 7 on each axis, no others.
    assert touched and all(5 <= y <= 7 and 5 <= x <= 7 for y, x in touched)


def test_location_loss_without_boxes_is_zero_and_keeps_the_graph() -> None:
    cam = torch.randn((2, 3, 4, 4), requires_grad=True)
    loss = location_loss(cam, _boxes(2, 3))
    assert float(loss.detach()) == 0.0
    loss.backward()  # still differentiable: a batch without boxes must not break training
