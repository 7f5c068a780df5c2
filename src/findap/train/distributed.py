"""Data-parallel training across processes (torchrun / accelerate launch): each rank runs some micro-batches.

Every rank builds the same step plan from the same seed, so the trained-token count of a step is known everywhere
without communication; micro-batch i of a step runs on rank i % world, and gradients are summed across ranks
before clipping and the optimizer step. The loss of a step is therefore identical to a single-process run.
"""
from __future__ import annotations

import os

import torch

from findap.train.loop import Distributed


def from_env() -> Distributed:
    """Join the process group the launcher describes (WORLD_SIZE/RANK/MASTER_ADDR); one process: no-op."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    import torch.distributed as td

    if not td.is_initialized():
        td.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Distributed(rank=td.get_rank(), world=td.get_world_size(), all_reduce=td.all_reduce,
                       barrier=td.barrier)


def sum_gradients(model, dist: Distributed) -> None:
    """Sum the gradients of all ranks in one flat all-reduce (a rank with no micro-batch contributes zeros)."""
    if dist.world == 1:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n
