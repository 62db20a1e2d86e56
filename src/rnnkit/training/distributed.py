"""Data-parallel training under ``torchrun`` (torch.distributed: gloo on CPU, nccl on GPU).

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) every function here is a no-op, so the same command
works with one process or many. With N processes:

* every rank builds the same batches (same seed) and keeps its ``1/N`` slice of each (``shard``);
* after backward, gradients are averaged across ranks, weighted by each rank's example count (one
  all-reduce over a flattened buffer), which makes a step on N slices equal to a step on the whole
  batch for mean-reduced losses;
* parameters are broadcast from rank 0 at the start; evaluation statistics are summed across
  ranks; only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as tdist
from torch import nn


@dataclass
class World:
    size: int = 1
    rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: Any) -> Any:
        """This rank's contiguous slice (dim 0) of every tensor in a batch nest."""
        if self.size == 1:
            return batch
        if isinstance(batch, torch.Tensor):
            return batch.tensor_split(self.size, dim=0)[self.rank] if batch.dim() else batch
        if isinstance(batch, dict):
            return {k: self.shard(v) for k, v in batch.items()}
        if isinstance(batch, (list, tuple)):
            return type(batch)(self.shard(v) for v in batch)
        return batch

    def broadcast(self, model: nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers."""
        if self.size == 1:
            return
        for t in model.state_dict().values():
            tdist.broadcast(t, src=0)

    def wrap(self, model: nn.Module) -> nn.Module:
        """Broadcast rank 0's parameters and average gradients after every backward."""
        if self.size == 1:
            return model
        self.broadcast(model)
        params = [p for p in model.parameters() if p.requires_grad]

        # one all-reduce over a flattened buffer, run by the trainer before each optimizer step. Each rank's
        # gradient is a mean over its own rows; weighting by row counts makes the result the mean over the
        # whole global batch even when the last batch does not split evenly.
        def hook(n_local: float) -> None:
            grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
            flat = torch.cat([g.reshape(-1) for g in grads] + [grads[0].new_ones(1)]) * float(n_local)
            tdist.all_reduce(flat)
            flat = flat[:-1] / flat[-1]
            offset = 0
            for p, g in zip(params, grads, strict=True):
                n = g.numel()
                p.grad = flat[offset : offset + n].view_as(p).clone()
                offset += n

        model._rnnkit_sync_grads = hook
        return model

    def sync_grads(self, model: nn.Module, n_local: float) -> None:
        """Average gradients over ranks, weighted by how many rows (or tokens) each rank's loss averaged."""
        if self.size > 1:
            model._rnnkit_sync_grads(n_local)

    def all_reduce_sum(self, stats: dict[str, float]) -> dict[str, float]:
        if self.size == 1 or not stats:
            return stats
        keys = sorted(stats)
        t = torch.tensor([float(stats[k]) for k in keys], dtype=torch.float64)
        if self.device.type == "cuda":
            t = t.to(self.device)
        tdist.all_reduce(t)
        return dict(zip(keys, t.tolist(), strict=True))


def init() -> World:
    """Join the process group when launched by ``torchrun``; otherwise a one-process world."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size <= 1:
        return World()
    if not tdist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        tdist.init_process_group(backend)
    rank = tdist.get_rank()
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    return World(size=tdist.get_world_size(), rank=rank, device=device)
