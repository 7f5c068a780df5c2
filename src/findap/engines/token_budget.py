"""Length-sorted batching under a token budget: similar lengths share a batch, and no batch holds more tokens than
the budget allows, so an engine's memory is bounded by `max_batch_tokens`, not by how long the prompts happen to be.

A batch is padded to its longest row, so its cost is rows x longest row: that product is what the budget bounds
(prefill activations and the KV cache grow with it; see docs/memory.md). Longest first, so an out-of-memory error
shows up on the first batch rather than after an hour of work.
"""
from __future__ import annotations

from typing import Sequence


def length_sorted_batches(
    lengths: Sequence[int], batch_size: int, max_tokens: int | None = None
) -> list[list[int]]:
    """Indices into `lengths`, longest first, grouped into batches of at most `batch_size` rows whose padded size
    (rows x longest row) stays within `max_tokens` (None: no token bound). A row longer than the budget on its own
    still gets a batch of one: it cannot be split, and the engine's max_length already bounds it."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_batch_tokens must be >= 1 (or None for no bound), not {max_tokens}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    for i in order:
        current = batches[-1] if batches else None
        # sorted longest first: a batch's padded length is its first row's
        fits = current is not None and len(current) < batch_size and (
            max_tokens is None or (len(current) + 1) * lengths[current[0]] <= max_tokens
        )
        if fits:
            current.append(i)
        else:
            batches.append([i])
    return batches
