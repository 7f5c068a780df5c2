"""AdamW with decoupled weight decay on matrices only, and the warmup-then-decay learning-rate schedule.

One rule for both trainers: `warmup_steps` rounds the warmup fraction to whole steps (half a step or less is no
warmup), and `lr_factor` warms up linearly, then decays linearly / by cosine / not at all.
"""
from __future__ import annotations

import math

import torch


def param_groups(model, weight_decay: float) -> list[dict]:
    """Decay weight matrices; never norms, biases or other 1-D parameters (decaying a norm gain toward 0 hurts)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def adamw_kernel(params) -> dict:
    """AdamW implementation flags: fused for plain CPU/CUDA tensors, foreach otherwise (e.g. FSDP DTensor shards).

    fused runs the whole update in one kernel per parameter, foreach several (measured on CPU: docs/results.md,
    "Trainer components").
    """
    from torch.distributed.tensor import DTensor

    plain = all(type(p) is not DTensor and p.device.type in ("cpu", "cuda") for p in params)
    return {"fused": True} if plain else {"foreach": True}


def build_optimizer(model, lr: float, *, weight_decay: float = 0.1, betas=(0.9, 0.95), eps: float = 1e-8):
    groups = param_groups(model, weight_decay)
    impl = adamw_kernel([p for g in groups for p in g["params"]])
    return torch.optim.AdamW(groups, lr=lr, betas=tuple(betas), eps=eps, **impl)


def warmup_steps(fraction: float, total: int) -> int:
    """Whole warmup steps for a warmup `fraction` of `total` steps (Python rounding: 0.5 -> 0)."""
    return round(fraction * total)


def lr_factor(step: int, total: int, warmup: int, schedule: str = "linear", min_ratio: float = 0.0) -> float:
    """Multiplier of the peak LR at optimizer step `step` (0-based): linear warmup, then linear/cosine decay."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    shape = 1.0 - progress if schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_ratio + (1.0 - min_ratio) * shape


def build_scheduler(optimizer, total_steps: int, warmup_steps: int, schedule: str = "linear",
                    min_ratio: float = 0.0):
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: lr_factor(s, total_steps, warmup_steps, schedule, min_ratio)
    )


def optimizer_for(model, knobs, lr: float, warmup: float, total_steps: int):
    """(AdamW, LR scheduler) for `total_steps` steps from a config section's optimizer knobs (findap.training.knobs)."""
    optimizer = build_optimizer(model, lr, weight_decay=knobs.weight_decay, betas=knobs.betas, eps=knobs.eps)
    scheduler = build_scheduler(optimizer, total_steps, warmup_steps(warmup, total_steps), knobs.schedule,
                                knobs.min_lr_ratio)
    return optimizer, scheduler
