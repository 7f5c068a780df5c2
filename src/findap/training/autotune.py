"""train.memory.autotune: among the plans that fit the memory budget, keep the one that runs fastest here.

The memory estimate (findap.training.memory) says which plans fit; which of them is fastest depends on the
machine (cache sizes, bf16 kernels, the allocator), so it is measured: each plan runs one warm-up and one timed
forward/backward pass on the first optimizer step's rows, with its micro-batch, checkpointing and loss chunk,
and the plan with the most tokens per second is kept. Gradients are cleared after every pass and no optimizer step
is taken, so the weights training starts from are the loaded ones. The plans differ only in how a step is split
and recomputed, so the step's loss is the same under each (up to floating-point summation order).
"""
from __future__ import annotations

import time
from typing import Callable

from findap.training.memory import MemoryPlan

MOST_PLANS = 4  # plans timed at most, in the estimate's order (each costs two passes)


def fastest_plan(plans: list[MemoryPlan], tokens_per_s: Callable[[MemoryPlan], float]) -> MemoryPlan:
    """The plan with the highest measured tokens/s among the first MOST_PLANS; its `timings` list them all."""
    timed = plans[:MOST_PLANS]
    timings = [{"micro_batch_tokens": p.micro_batch_tokens, "gradient_checkpointing": p.gradient_checkpointing,
                "loss_chunk_tokens": p.loss_chunk_tokens, "tokens_per_s": round(tokens_per_s(p), 1)}
               for p in timed]
    best = max(range(len(timed)), key=lambda i: timings[i]["tokens_per_s"])
    chosen = timed[best]
    chosen.timings = timings
    return chosen


def pass_speed(run_pass: Callable[[], int], clear: Callable[[], None]) -> float:
    """Tokens per second of `run_pass` (returns the tokens it ran) after one warm-up call; `clear` after each."""
    run_pass()
    clear()
    start = time.perf_counter()
    tokens = run_pass()
    seconds = time.perf_counter() - start
    clear()
    return tokens / max(seconds, 1e-9)
