"""Length-sorted batching: similar lengths share a batch, so little compute is spent on padding.

Longest first, so an out-of-memory error shows up on the first batch rather than after an hour of work.
"""
from __future__ import annotations

from typing import Sequence


def length_sorted_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices into `lengths`, grouped into batches of at most `batch_size`, longest items first."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, not {batch_size}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
