"""Reference log-probs, computed once before training so no frozen second model sits in memory while training.

The pass uses the same packed rows (and so the same numerics) as training; at step 0 the policy's log-probs equal
these and the DPO term is exactly log 2. Results are cached in the stage directory keyed by pair id, so a resumed
run does not recompute them.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from tqdm import tqdm

from findap.align.encode import TokenizedPair
from findap.align.logprobs import row_logprobs
from findap.align.packing import pack_pairs
from findap.io import write_json
from findap.models import autocast


@torch.no_grad()
def reference_logprobs(
    model,
    pairs: list[TokenizedPair],
    *,
    row_tokens: int,
    share_prompt: bool = True,
    chunk: int = 1024,
    precision: str = "auto",
    progress: bool = True,
) -> dict[str, tuple[float, float]]:
    """{pair id: (log p_ref(chosen), log p_ref(rejected))}, summed over response tokens."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: dict[str, tuple[float, float]] = {}
    rows = pack_pairs(pairs, row_tokens, share_prompt)
    for row in tqdm(rows, desc="reference log-probs", disable=not progress):
        with autocast(device, precision, training=True):  # the precision the policy is trained at
            sums, _ = row_logprobs(model, row, chunk)
        sums = sums.float().cpu().tolist()
        for k, pid in enumerate(row.pair_ids):
            out[pid] = (sums[2 * k], sums[2 * k + 1])
    model.train(was_training)
    return out


def cached_reference_logprobs(path: Path, model, pairs: list[TokenizedPair], **kwargs) -> dict[str, tuple[float, float]]:
    """Load `path` if it covers every pair, else compute and write it atomically."""
    path = Path(path)
    if path.exists():
        cached = {k: tuple(v) for k, v in json.loads(path.read_text()).items()}
        if all(p.id in cached for p in pairs):
            return cached
    ref = reference_logprobs(model, pairs, **kwargs)
    write_json(path, ref)
    return ref
