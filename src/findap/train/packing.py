"""Best-fit-decreasing packing of token documents into rows of the context length.

A pack of three documents A (5 tokens), B (3) and C (4) in a row of 14, with 2 padding tokens P:

    tokens        A0 A1 A2 A3 A4 | B0 B1 B2 | C0 C1 C2 C3 | P  P
    position_ids   0  1  2  3  4 |  0  1  2 |  0  1  2  3 | 0  1      restart per document
    labels         -  a1 a2 a3 a4|  -  b1 b2|  -  c1 c2 c3| -  -      first token of each document is -100
    doc_lens      [5, 3, 4, 2]                                        the padding is a document of its own

    attention (1 = may attend), block-diagonal causal:
        A: lower triangle over A only; B: over B only; C: over C only; P: over P only.

Labels are unshifted (Hugging Face convention): position t is trained to predict labels[t + 1]. Because the first
token of every document is -100, the last token of A is never trained to predict B0, and packed training sees
exactly the targets of unpacked training.
"""
from __future__ import annotations

import bisect
import random

import torch

IGNORE = -100


def best_fit_decreasing(lengths: list[int], capacity: int) -> list[list[int]]:
    """Bins of document indices: each document goes to the fullest bin that still has room for it."""
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # sorted (remaining capacity, bin index)
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"document {i} has {n} tokens, more than the row capacity {capacity}")
        k = bisect.bisect_left(free, (n, -1))
        if k < len(free):
            room, b = free.pop(k)
        else:
            room, b = capacity, len(bins)
            bins.append([])
        bins[b].append(i)
        if room - n > 0:
            bisect.insort(free, (room - n, b))
    return bins


def pack_documents(docs: list[dict], seq_len: int, *, seed: int | None = 0) -> list[list[dict]]:
    """Pack documents into rows (lists of documents), rows shuffled with `seed` (None keeps BFD order)."""
    bins = best_fit_decreasing([len(d["input_ids"]) for d in docs], seq_len)
    rows = [[docs[i] for i in b] for b in bins]
    if seed is not None:
        random.Random(seed).shuffle(rows)
    return rows


def packing_efficiency(rows: list[list[dict]], seq_len: int) -> float:
    """Real tokens / row capacity (1.0 = no padding)."""
    if not rows:
        return 0.0
    return sum(len(d["input_ids"]) for r in rows for d in r) / (len(rows) * seq_len)


def collate_rows(rows: list[list[dict]], seq_len: int, pad_id: int) -> dict:
    """Rows of documents -> tensors (R, seq_len) plus per-row document lengths (padding = its own document)."""
    n_rows = len(rows)
    input_ids = torch.full((n_rows, seq_len), pad_id, dtype=torch.long)
    labels = torch.full((n_rows, seq_len), IGNORE, dtype=torch.long)
    position_ids = torch.zeros((n_rows, seq_len), dtype=torch.long)
    doc_lens: list[list[int]] = []
    for r, row in enumerate(rows):
        t, lens = 0, []
        for d in row:
            n = len(d["input_ids"])
            input_ids[r, t:t + n] = torch.tensor(d["input_ids"])
            labels[r, t + 1:t + n] = torch.tensor(d["labels"][1:])
            position_ids[r, t:t + n] = torch.arange(n)
            lens.append(n)
            t += n
        if t < seq_len:
            position_ids[r, t:] = torch.arange(seq_len - t)
            lens.append(seq_len - t)
        doc_lens.append(lens)
    return {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "doc_lens": doc_lens,
            "n_real": sum(len(d["input_ids"]) for row in rows for d in row)}


def collate_flat(rows: list[list[dict]]) -> dict:
    """Rows of documents -> one padding-free stream (1, T) with document lengths (for varlen kernels)."""
    docs = [d for row in rows for d in row]
    ids = [t for d in docs for t in d["input_ids"]]
    labels = [l for d in docs for l in [IGNORE] + list(d["labels"][1:])]
    pos = [p for d in docs for p in range(len(d["input_ids"]))]
    lens = [len(d["input_ids"]) for d in docs]
    return {"input_ids": torch.tensor([ids]), "labels": torch.tensor([labels]), "position_ids": torch.tensor([pos]),
            "doc_lens": [lens], "n_real": len(ids)}


def trained_tokens(batch: dict) -> int:
    """Number of positions with a target (labels shifted by one within the row)."""
    return int((batch["labels"][:, 1:] != IGNORE).sum())


def cu_seqlens(doc_lens: list[list[int]], device=None) -> torch.Tensor:
    """Cumulative document lengths over the flattened batch, int32, starting at 0 (flash-attention varlen)."""
    flat = [n for row in doc_lens for n in row]
    out = torch.zeros(len(flat) + 1, dtype=torch.int32)
    out[1:] = torch.cumsum(torch.tensor(flat, dtype=torch.int32), 0)
    return out.to(device) if device is not None else out
