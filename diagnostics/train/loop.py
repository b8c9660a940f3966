"""The training loop: seeded, checkpointed each epoch, resumable, early-stopped on validation AUROC.

Checkpoints hold state dicts and plain values only and are loaded with `weights_only=True`, so
a checkpoint file can never execute code. `last.pt` is enough to resume an interrupted run
exactly where it stopped; `best.pt` holds the weights of the best validation epoch.
"""

from __future__ import annotations

import logging
import math
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from diagnostics.errors import CheckpointError, ConfigurationError
from diagnostics.nets import CamNet, build_model
from diagnostics.train.data import CachedDataset
from diagnostics.train.metrics import auroc
from diagnostics.train.recipe import TrainingConfig

log = logging.getLogger(__name__)

LAST, BEST = "last.pt", "best.pt"

LOCATION_MARGIN = 0.06
"""Augmentation shifts content by up to about 5 % of the image; location windows allow for it."""


@dataclass
class FitResult:
    best_epoch: int
    best_auroc: float
    epochs_run: int
    history: list[dict[str, float]] = field(default_factory=list)


def predict_logits(model: CamNet, dataset: CachedDataset, batch_size: int = 64) -> np.ndarray:
    """Logits (N, K) for a dataset, in order, with the model in evaluation mode."""
    model.eval()
    outputs = []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with torch.inference_mode():
        for images, _, _ in loader:
            outputs.append(model(images.to(memory_format=torch.channels_last)).numpy())
    return np.concatenate(outputs).astype(np.float64)


def mean_auroc(labels: np.ndarray, logits: np.ndarray) -> tuple[float, list[float]]:
    """Mean over findings; a finding with one class only in validation counts as 0.5.

    Unknown labels (`UNKNOWN_LABEL`, below 0) are left out of their finding's AUROC.
    """
    per_finding = []
    for k in range(labels.shape[1]):
        known = labels[:, k] >= 0
        column = labels[known, k]
        if column.size == 0 or column.min() == column.max():
            per_finding.append(0.5)
        else:
            per_finding.append(auroc(column, logits[known, k]))
    return float(np.mean(per_finding)), per_finding


def classification_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the known labels; unknown ones (below 0) add nothing.

    With every label known this is exactly the plain mean, so 0/1 datasets train as before.
    """
    known = targets >= 0
    if bool(known.all()):
        return torch.nn.functional.binary_cross_entropy_with_logits(logits, targets)
    losses = torch.nn.functional.binary_cross_entropy_with_logits(
        logits, targets.clamp(min=0.0), reduction="none"
    )
    return (losses * known).sum() / known.sum().clamp(min=1)


def location_loss(
    cam: torch.Tensor, boxes: torch.Tensor, margin: float = LOCATION_MARGIN
) -> torch.Tensor:
    """Push each finding's CAM to fire inside its known box, where the labels give one.

    Multiple-instance style: only the strongest cell in the box (grown by `margin`) is asked to
    be positive, which tolerates boxes a cell off after augmentation; the image-level loss keeps
    the other cells quiet. Without this a 5 mm nodule, one cell among hundreds, is learnt slowly
    or not at all from image labels alone.
    """
    known = ~torch.isnan(boxes[..., 0])
    if not bool(known.any()):
        return cam.sum() * 0.0
    _, _, h, w = cam.shape
    grow = max(margin, 0.5 / min(h, w))  # every window holds at least one cell centre
    ys = (torch.arange(h, dtype=cam.dtype) + 0.5) / h
    xs = (torch.arange(w, dtype=cam.dtype) + 0.5) / w
    x0, y0, x1, y1 = (boxes[..., i, None, None] for i in range(4))
    window = (xs >= x0 - grow) & (xs <= x1 + grow) & (ys[:, None] >= y0 - grow)
    window &= ys[:, None] <= y1 + grow
    peak = cam.masked_fill(~window, float("-inf")).flatten(2).amax(dim=2)
    return torch.nn.functional.binary_cross_entropy_with_logits(
        peak[known], torch.ones_like(peak[known])
    )


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)  # a crash mid-write never leaves a half checkpoint


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load with `weights_only=True`; every failure is a `CheckpointError` naming the file."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, OSError, EOFError, ValueError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({exc})") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), dict):
        raise CheckpointError(f"{path}: not a checkpoint written by this project")
    return payload


def load_weights(model: CamNet, payload: dict[str, Any], source: Path) -> None:
    """Strictly load weights, naming what does not fit instead of a wall of tensor shapes."""
    arch = payload.get("architecture")
    try:
        model.load_state_dict(payload["model"], strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise CheckpointError(
            f"{source}: checkpoint (architecture {arch!r}) does not fit this model: {first}"
        ) from None


def model_from_checkpoint(path: Path, in_channels: int) -> tuple[CamNet, dict[str, Any]]:
    """Rebuild the model a checkpoint was trained with and load its weights."""
    payload = load_checkpoint(path)
    arch, findings = payload.get("architecture"), payload.get("findings")
    if not isinstance(arch, str) or not isinstance(findings, list):
        raise CheckpointError(f"{path}: checkpoint lacks its architecture or findings")
    try:
        model = build_model(arch, in_channels, len(findings))
    except ConfigurationError as exc:  # an architecture or finding list this code cannot build
        raise CheckpointError(f"{path}: cannot rebuild the checkpoint's model: {exc}") from None
    load_weights(model, payload, path)
    return model, payload


def _epoch(
    model: CamNet,
    loader: DataLoader[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    progress: bool,
    label: str,
) -> float:
    model.train()
    total, count = 0.0, 0
    batches: Any = loader
    if progress:
        from tqdm import tqdm

        batches = tqdm(loader, desc=label, unit="batch", leave=False)
    for images, targets, boxes in batches:
        optimizer.zero_grad(set_to_none=True)
        logits, cam = model.forward_with_cam(images.to(memory_format=torch.channels_last))
        loss = classification_loss(logits, targets) + location_loss(cam, boxes)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        optimizer.step()
        total += float(loss.detach()) * len(images)
        count += len(images)
    return total / max(count, 1)


def fit(
    model: CamNet,
    architecture: str,
    findings: Sequence[str],
    train_set: CachedDataset,
    validation_set: CachedDataset,
    config: TrainingConfig,
    workdir: Path,
    *,
    seed: int,
    resume: bool = False,
    progress: bool = False,
) -> FitResult:
    """Train with AdamW and a cosine schedule; keep the epoch with the best mean AUROC."""
    workdir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(seed)
    model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay
    )
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    start, best_auroc, best_epoch, history = 0, -math.inf, -1, []
    if resume and (workdir / LAST).is_file():
        state = load_checkpoint(workdir / LAST)
        planned = state.get("scheduler", {}).get("T_max")
        if planned != config.epochs:
            # The cosine schedule spans the planned epochs; stretching it mid-run would raise
            # the learning rate again and silently change what "resume" means.
            raise CheckpointError(
                f"{workdir / LAST}: this run was planned for {planned} epochs but the recipe now "
                f"says {config.epochs}; use a new work folder to train with a different length"
            )
        load_weights(model, state, workdir / LAST)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, best_auroc = int(state["epoch"]) + 1, float(state["best_auroc"])
        best_epoch, history = int(state["best_epoch"]), list(state["history"])
        log.info("resuming at epoch %d (best so far %.4f)", start, best_auroc)
    labels = validation_set.labels.numpy()
    epoch = start - 1
    for epoch in range(start, config.epochs):
        if epoch - best_epoch > config.patience and best_epoch >= 0:
            log.info("early stop: no better validation AUROC for %d epochs", config.patience)
            break
        train_set.reseed(seed * 10_000 + epoch)
        order = torch.Generator().manual_seed(seed * 10_000 + epoch)
        loader = DataLoader(train_set, config.batch_size, shuffle=True, generator=order)
        loss = _epoch(model, loader, optimizer, progress, f"epoch {epoch + 1}/{config.epochs}")
        scheduler.step()
        val_auroc, per_finding = mean_auroc(labels, predict_logits(model, validation_set))
        record = {"epoch": float(epoch), "loss": loss, "val_auroc": val_auroc}
        record.update({f"val_auroc_{c}": a for c, a in zip(findings, per_finding, strict=True)})
        history.append(record)
        log.info("epoch %d: loss %.4f, validation AUROC %.4f", epoch + 1, loss, val_auroc)
        if val_auroc > best_auroc:
            best_auroc, best_epoch = val_auroc, epoch
            save_checkpoint(
                workdir / BEST,
                {
                    "model": model.state_dict(),
                    "architecture": architecture,
                    "findings": list(findings),
                    "epoch": epoch,
                },
            )
        save_checkpoint(
            workdir / LAST,
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "architecture": architecture,
                "findings": list(findings),
                "epoch": epoch,
                "best_auroc": best_auroc,
                "best_epoch": best_epoch,
                "history": history,
            },
        )
    best = load_checkpoint(workdir / BEST)
    load_weights(model, best, workdir / BEST)
    return FitResult(best_epoch, best_auroc, epoch + 1 - start, history)
