"""Best-fit-decreasing packing and the packed row layout."""
import random

import pytest
import torch

from findap.train.packing import (IGNORE, best_fit_decreasing, collate_flat, collate_rows, cu_seqlens, pack_documents,
                                  packing_efficiency, trained_tokens)


def reference_bfd(lengths, capacity):
    """Textbook best-fit decreasing, by linear scan (independent of the bisect implementation)."""
    bins, loads = [], []
    for i in sorted(range(len(lengths)), key=lambda i: (-lengths[i], i)):
        fits = [b for b in range(len(bins)) if loads[b] + lengths[i] <= capacity]
        if fits:
            b = max(fits, key=lambda b: (loads[b], -b))
            bins[b].append(i)
            loads[b] += lengths[i]
        else:
            bins.append([i])
            loads.append(lengths[i])
    return sorted(sorted(b) for b in bins)


def test_bfd_matches_reference_and_is_complete():
    rng = random.Random(0)
    lengths = [rng.randint(1, 300) for _ in range(300)]
    bins = best_fit_decreasing(lengths, 512)
    assert sorted(i for b in bins for i in b) == list(range(300))
    assert all(sum(lengths[i] for i in b) <= 512 for b in bins)
    assert len(bins) == len(reference_bfd(lengths, 512))
    assert sum(lengths) / (len(bins) * 512) > 0.95


def test_bfd_hand_example():
    # 6+4 and 5+5 fill two rows exactly; first-fit in input order would need three.
    assert sorted(map(sorted, best_fit_decreasing([5, 6, 5, 4], 10))) == [[0, 2], [1, 3]]
    with pytest.raises(ValueError, match="more than the row capacity"):
        best_fit_decreasing([11], 10)


def docs_of(lengths, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [{"input_ids": torch.randint(5, 100, (n,), generator=g).tolist(),
             "labels": torch.randint(5, 100, (n,), generator=g).tolist(), "kind": "cpt"} for n in lengths]


def test_collate_rows_layout():
    docs = docs_of([5, 3, 4])
    [row] = pack_documents(docs, 14, seed=None)
    b = collate_rows([row], 14, pad_id=0)
    assert b["doc_lens"] == [[5, 4, 3, 2]]
    assert b["position_ids"][0].tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 0, 1, 2, 0, 1]
    lab = b["labels"][0].tolist()
    assert [lab[i] for i in (0, 5, 9, 12, 13)] == [IGNORE] * 5  # document starts and padding
    assert lab[1:5] == row[0]["labels"][1:]
    assert b["n_real"] == 12 and trained_tokens(b) == 9
    assert packing_efficiency([row], 14) == pytest.approx(12 / 14)
    flat = collate_flat([row])
    assert flat["input_ids"].shape == (1, 12) and flat["doc_lens"] == [[5, 4, 3]]
    assert cu_seqlens(flat["doc_lens"]).tolist() == [0, 5, 9, 12]
    assert trained_tokens(flat) == 9
