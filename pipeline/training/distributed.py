"""Data-parallel training on PyTorch's own engine: torchrun's environment, DistributedDataParallel, batch shards.

One process is the plain case; under torchrun (WORLD_SIZE > 1) each process trains on its shard of every batch.
"""
from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def world() -> tuple[int, int]:
    """(rank, world size) of this process; (0, 1) when not distributed."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def init_from_env(device: str = "cpu") -> bool:
    """Join the process group torchrun describes (gloo on CPU, nccl on CUDA); False when not under torchrun."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return dist.is_initialized()
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return True


def wrap(model: nn.Module) -> nn.Module:
    """`model` inside DistributedDataParallel when distributed (gradients averaged over processes), else itself."""
    if world()[1] == 1:
        return model
    return nn.parallel.DistributedDataParallel(model)


def shard(index: torch.Tensor) -> torch.Tensor:
    """This process's contiguous part of a batch's sample indices. DDP averages the per-process mean losses'
    gradients, which equals the full batch's gradient when the parts have equal sizes (batch size divisible
    by the number of processes)."""
    rank, size = world()
    return index if size == 1 else torch.tensor_split(index, size)[rank]


def all_sum(*values: torch.Tensor) -> list[torch.Tensor]:
    """The sums over all processes of each tensor (themselves when not distributed)."""
    if world()[1] == 1:
        return list(values)
    out = []
    for v in values:
        v = v.detach().clone()
        dist.all_reduce(v)
        out.append(v)
    return out
