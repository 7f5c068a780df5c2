"""Which packed rows make up each optimizer step, and the learning-rate curve.

A step takes shuffled rows until it holds `batch_tokens` tokens (the paper's 32K-token batches); the loss of a
step is normalised by the step's own pair and chosen-token counts, so packing and accumulation never change it.
"""
from __future__ import annotations

import math
import random

from findap.align.packing import PackedRow


def plan_steps(rows: list[PackedRow], batch_tokens: int, epochs: float, seed: int) -> list[list[int]]:
    """Row indices per optimizer step over `epochs` passes (a fractional last pass is cut short)."""
    steps: list[list[int]] = []
    for epoch in range(math.ceil(epochs)):
        order = list(range(len(rows)))
        random.Random(seed + epoch).shuffle(order)
        if epoch + 1 > epochs:  # fractional final epoch
            order = order[: max(1, round(len(order) * (epochs - epoch)))]
        current, tokens = [], 0
        for i in order:
            current.append(i)
            tokens += len(rows[i])
            if tokens >= batch_tokens:
                steps.append(current)
                current, tokens = [], 0
        if current:
            steps.append(current)
    return steps


def warmup_linear(step: int, total: int, warmup: float) -> float:
    """LR multiplier: linear warmup over `warmup * total` steps, then linear decay to zero at `total`."""
    n_warm = max(1, round(warmup * total)) if warmup > 0 else 0
    if step < n_warm:
        return (step + 1) / n_warm
    return max(0.0, (total - step) / max(1, total - n_warm))
