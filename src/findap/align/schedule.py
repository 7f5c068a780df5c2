"""Which packed rows make up each optimizer step (the learning-rate curve is findap.training.optim's).

A step takes shuffled rows until it holds `tokens_per_step` tokens (the paper's 32K-token batches); the loss of a
step is normalised by the step's own pair and chosen-token counts, so packing and accumulation never change it.
"""
from __future__ import annotations

import math
import random

from findap.align.packing import PackedRow


def plan_steps(rows: list[PackedRow], tokens_per_step: int, epochs: float, seed: int) -> list[list[int]]:
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
            if tokens >= tokens_per_step:
                steps.append(current)
                current, tokens = [], 0
        if current:
            steps.append(current)
    return steps
