"""Reference log-probs, computed once before training so no frozen second model sits in memory while training.

The pass uses the same packed rows (and so the same numerics) as training; at step 0 the policy's log-probs equal
these and the DPO term is exactly log 2. Results are cached in the stage directory under a key: a hash of
everything they depend on (see `reference_key`). A resumed run with the same inputs reuses them; a rerun after
the train or distill stage changed the model, the pairs, the tokenizer or a packing setting recomputes them.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from findap.align.encode import TokenizedPair
from findap.align.logprobs import row_logprobs
from findap.align.packing import pack_pairs
from findap.io import write_json
from findap.models import autocast, resolve_model

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


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
    from rich.progress import track

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    out: dict[str, tuple[float, float]] = {}
    rows = pack_pairs(pairs, row_tokens, share_prompt)
    for row in track(rows, description="reference log-probs", disable=not progress, transient=True):
        with autocast(device, precision, training=True):  # the precision the policy is trained at
            sums, _ = row_logprobs(model, row, chunk)
        sums = sums.float().cpu().tolist()
        for k, pid in enumerate(row.pair_ids):
            out[pid] = (sums[2 * k], sums[2 * k + 1])
    model.train(was_training)
    return out


def model_fingerprint(model_name: str) -> dict:
    """What identifies the reference model's weights without reading them: a local directory's config.json
    content and the name, size and modification time of each weights file; a hub id as it is."""
    path = Path(resolve_model(model_name))
    if not path.is_dir():
        return {"model": str(model_name)}
    config = path / "config.json"
    weights = sorted((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in path.iterdir()
                     if f.is_file() and f.name.endswith(WEIGHT_SUFFIXES))
    return {"model": str(path.resolve()),
            "config_sha256": hashlib.sha256(config.read_bytes()).hexdigest() if config.exists() else None,
            "weights": weights}


def reference_key(model_name: str, tokenizer, pairs: list[TokenizedPair], *, max_length: int, row_tokens: int,
                  share_prompt: bool, chunk: int, precision: str) -> str:
    """sha256 of the model fingerprint, the tokenizer, the settings that change the numbers, and every pair's
    token ids (which carry its prompt and response texts as this tokenizer, chat template and max_length cut
    them)."""
    digest = hashlib.sha256()
    head = {"model": model_fingerprint(model_name), "tokenizer": getattr(tokenizer, "name_or_path", None),
            "vocab": len(tokenizer), "max_length": max_length, "row_tokens": row_tokens,
            "share_prompt": share_prompt, "chunk": chunk, "precision": precision}
    digest.update(json.dumps(head, sort_keys=True, default=str).encode())
    for p in sorted(pairs, key=lambda p: p.id):
        digest.update(json.dumps([p.id, p.prompt_ids, p.chosen_ids, p.rejected_ids]).encode())
    return digest.hexdigest()


def cached_reference_logprobs(path: Path, key: str, model, pairs: list[TokenizedPair],
                              **kwargs) -> dict[str, tuple[float, float]]:
    """The log-probs stored at `path` when they were computed under `key`, else computed and written atomically
    (a file without a key, from before keys existed, is recomputed)."""
    path = Path(path)
    if path.exists():
        cached = json.loads(path.read_text())
        if isinstance(cached, dict) and cached.get("key") == key:
            return {k: tuple(v) for k, v in cached["logps"].items()}
    ref = reference_logprobs(model, pairs, **kwargs)
    write_json(path, {"key": key, "logps": ref})
    return ref
