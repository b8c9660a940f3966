"""The training loop: seeded, checkpointed each epoch, resumable, early-stopped on validation AUROC.

Checkpoints hold state dicts and plain values only and are loaded with `weights_only=True`, so
a checkpoint file can never execute code. `last.pt` is enough to resume an interrupted run
exactly where it stopped; `best.pt` holds the weights of the best validation epoch.
"""

from __future__ import annotations

import logging
import math
import pickle
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, DistributedSampler

from diagnostics.errors import CheckpointError, ConfigurationError
from diagnostics.nets import CamNet, build_model
from diagnostics.train.data import CachedDataset
from diagnostics.train.distributed import Group
from diagnostics.train.metrics import auroc
from diagnostics.train.recipe import TrainingConfig
from diagnostics.train.report import epoch_line

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


Echo = Callable[[str], None]
"""Where progress lines go (stderr in the CLI); None prints nothing."""


def predict_logits(
    model: CamNet,
    dataset: CachedDataset,
    batch_size: int = 64,
    device: torch.device | None = None,
) -> np.ndarray:
    """Logits (N, K) for a dataset, in order, with the model in evaluation mode."""
    model.eval()
    outputs = []
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    with torch.inference_mode():
        for images, _, _ in loader:
            images = images.to(device or "cpu", memory_format=torch.channels_last)
            outputs.append(model(images).cpu().numpy())
    return np.concatenate(outputs).astype(np.float64)


def validation_loss(labels: np.ndarray, logits: np.ndarray) -> float:
    """The training loss's classification part on validation logits (known labels only)."""
    targets = torch.from_numpy(labels.astype(np.float32))
    return float(classification_loss(torch.from_numpy(logits.astype(np.float32)), targets))


class _WithCam(torch.nn.Module):
    """`forward` returning (logits, cam), so DDP's hooks see the call that training makes."""

    def __init__(self, net: CamNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, cam = self.net.forward_with_cam(images)
        return logits, cam


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
    step: torch.nn.Module,
    loader: DataLoader[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
    optimizer: torch.optim.Optimizer,
    progress: bool,
    label: str,
    group: Group | None,
) -> float:
    """One pass over this rank's batches; the mean loss over every rank's cases.

    The bar is drawn only on a terminal (a log file gets the per-epoch line instead) and keeps
    its final state, so what it showed does not vanish.
    """
    step.train()
    device = group.device if group else torch.device("cpu")
    total, count = 0.0, 0
    batches: Any = loader
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        batches = tqdm(loader, desc=label, unit="batch", leave=True)
    for images, targets, boxes in batches:
        optimizer.zero_grad(set_to_none=True)
        images = images.to(device, memory_format=torch.channels_last)
        logits, cam = step(images)
        targets, boxes = targets.to(device), boxes.to(device)
        loss = classification_loss(logits, targets) + location_loss(cam, boxes)
        loss.backward()  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        optimizer.step()
        total += float(loss.detach()) * len(images)
        count += len(images)
    if group is not None:
        total, summed = group.sum(total, count)
        count = int(summed)
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
    echo: Echo | None = None,
    group: Group | None = None,
) -> FitResult:
    """Train with AdamW and a cosine schedule; keep the epoch with the best mean AUROC.

    Under torchrun (`group`), each rank trains on its shard through DDP, rank 0 alone
    validates, prints and writes checkpoints, and broadcasts the validation AUROC so every rank
    stops at the same epoch.
    """
    leader = group is None or group.leader
    device = group.device if group else torch.device("cpu")
    workdir.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(seed)
    model.to(device).to(memory_format=torch.channels_last)
    step: torch.nn.Module = _WithCam(model)
    if group is not None:
        from torch.nn.parallel import DistributedDataParallel

        ids = [group.local_rank] if device.type == "cuda" else None
        step = DistributedDataParallel(step, device_ids=ids)
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
        model.to(device).to(memory_format=torch.channels_last)
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
            if echo is not None:
                echo(f"early stop: no better validation AUROC for {config.patience} epochs")
            break
        began = time.monotonic()
        loss = _epoch(
            step,
            _loader(train_set, config.batch_size, seed, epoch, group),
            optimizer,
            progress and leader,
            f"epoch {epoch + 1}/{config.epochs}",
            group,
        )
        scheduler.step()
        record: dict[str, float] = {"epoch": float(epoch), "loss": loss}
        if leader:
            logits = predict_logits(model, validation_set, device=device)
            val_auroc, per_finding = mean_auroc(labels, logits)
            record["val_loss"] = validation_loss(labels, logits)
            record.update({f"val_auroc_{c}": a for c, a in zip(findings, per_finding, strict=True)})
        else:
            val_auroc = math.nan
        if group is not None:
            val_auroc = group.broadcast(val_auroc)
        record["val_auroc"] = val_auroc
        record["seconds"] = time.monotonic() - began
        history.append(record)
        log.info("epoch %d: loss %.4f, validation AUROC %.4f", epoch + 1, loss, val_auroc)
        if val_auroc > best_auroc:
            best_auroc, best_epoch = val_auroc, epoch
        if echo is not None and leader:
            echo(epoch_line(record, findings, config.epochs, best_epoch, best_auroc))
        if not leader:
            continue
        if best_epoch == epoch:
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
    if not leader:  # rank 0 alone evaluates and exports the best weights
        return FitResult(best_epoch, best_auroc, epoch + 1 - start, history)
    best = load_checkpoint(workdir / BEST)
    load_weights(model, best, workdir / BEST)
    model.to("cpu")  # evaluation and ONNX export run on the CPU, as serving does
    return FitResult(best_epoch, best_auroc, epoch + 1 - start, history)


def _loader(
    train_set: CachedDataset, batch_size: int, seed: int, epoch: int, group: Group | None
) -> DataLoader[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """This epoch's shuffled batches: the whole set, or this rank's shard under torchrun.

    Seeded by (seed, epoch) so a resumed run sees the same order and augmentation.
    """
    if group is None:
        train_set.reseed(seed * 10_000 + epoch)
        order = torch.Generator().manual_seed(seed * 10_000 + epoch)
        return DataLoader(train_set, batch_size, shuffle=True, generator=order)
    train_set.reseed(seed * 10_000 + epoch + 1_000_003 * group.rank)
    sampler: DistributedSampler[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]
    sampler = DistributedSampler(
        train_set, num_replicas=group.world, rank=group.rank, shuffle=True, seed=seed
    )
    sampler.set_epoch(epoch)
    return DataLoader(train_set, group.batch(batch_size), sampler=sampler)
