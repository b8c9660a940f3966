"""Training across processes with torchrun: the process group, and the launcher behind `--nproc`.

torchrun (`torch.distributed.run`) starts one process per rank and sets RANK, WORLD_SIZE,
LOCAL_RANK and the rendezvous address; `join` reads them. Every rank trains on its own shard
(DistributedSampler) and DDP averages the gradients, so N ranks of batch B/N train like one
process of batch B. Rank 0 alone generates data, fills the preprocessing cache, evaluates,
writes checkpoints and the package, and prints; the others wait at barriers. Gloo on CPU, NCCL
when CUDA is available.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Group:
    """This process's place in a torchrun job."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def batch(self, batch_size: int) -> int:
        """Per-rank batch so the ranks together take the recipe's batch per step."""
        return max(1, math.ceil(batch_size / self.world))

    def barrier(self) -> None:
        dist.barrier()

    def broadcast(self, value: float) -> float:
        """Rank 0's `value` on every rank (decisions such as early stopping stay in step)."""
        tensor = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.broadcast(tensor, src=0)
        return float(tensor.item())

    def sum(self, *values: float) -> list[float]:
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor)
        return [float(v) for v in tensor.tolist()]


def join() -> Group | None:
    """The process group of a torchrun job (initialised once), or None in a plain process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cpu")
    if cuda:
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    return Group(rank, world, local_rank, device)


def leave() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def launch(nproc: int, argv: Sequence[str]) -> int:
    """Run `diagnostics ARGV` as `nproc` local ranks under torchrun; its exit status.

    `--standalone` picks a free local rendezvous port, so two runs on one machine never clash.
    For several machines run torchrun yourself (see docs/architecture.md).
    """
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={nproc}",
        "-m",
        "diagnostics.cli",
        *argv,
    ]
    return subprocess.run(command, check=False).returncode
