"""Small pieces of the engines checked against hand-worked values."""
import math

import pytest
import torch

from findap.engines.token_budget import length_sorted_batches
from findap.engines.decoding import nucleus_filter
from findap.engines.scoring import _packed_mask, _row_layout, plan_groups
from findap.engines.text import normalise_stop, truncate_at_stop


def test_truncate_at_the_earliest_stop_string():
    assert truncate_at_stop("Answer: B\n\nQuestion: next", ("Question:", "\n\n")) == "Answer: B"
    assert truncate_at_stop("no stop here", ("###",)) == "no stop here"
    assert truncate_at_stop("abc", None) == "abc"
    assert normalise_stop("x") == ("x",) and normalise_stop(["a", ""]) == ("a",) and normalise_stop(None) is None


def test_nucleus_filter_keeps_the_smallest_set_reaching_top_p():
    probs = torch.tensor([0.15, 0.5, 0.05, 0.3])
    kept = nucleus_filter(probs.log(), top_p=0.8)
    # sorted: 0.5 (mass before 0), 0.3 (0.5), 0.15 (0.8 -> dropped), 0.05 (dropped)
    assert torch.isinf(kept).tolist() == [True, False, True, False]
    assert kept[1].item() == pytest.approx(math.log(0.5))
    assert torch.equal(nucleus_filter(probs.log(), 1.0), probs.log())
    assert torch.isinf(nucleus_filter(probs.log(), 0.01)).sum() == 3  # the top token always survives


def test_length_sorted_batches_longest_first():
    assert length_sorted_batches([3, 9, 1, 7, 5], 2) == [[1, 3], [4, 0], [2]]
    with pytest.raises(ValueError):
        length_sorted_batches([1], 0)


def test_packed_row_layout_and_mask_drawn_by_hand():
    # context c0 c1 c2, continuations (a0 a1 a2) and (b0 b1): row = c0 c1 c2 a0 a1 b0
    groups = plan_groups([([10, 11, 12], [20, 21, 22]), ([10, 11, 12], [30, 31])], max_length=64)
    assert len(groups) == 1
    tokens, positions, segments, reads = _row_layout(groups[0])
    assert tokens == [10, 11, 12, 20, 21, 30]
    assert positions == [0, 1, 2, 3, 4, 3]
    assert segments == [0, 0, 0, 1, 1, 2]
    assert reads == [[2, 3, 4], [2, 5]]  # logits that predict a0 a1 a2, and b0 b1
    mask = _packed_mask(torch.tensor([segments + [-1]]))[0, 0].int().tolist()
    assert mask == [
        [1, 0, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0, 0],
        [1, 1, 1, 1, 0, 0, 0],  # a0 sees the context and itself
        [1, 1, 1, 1, 1, 0, 0],
        [1, 1, 1, 0, 0, 1, 0],  # b0 sees the context, not a0 a1
        [0, 0, 0, 0, 0, 0, 1],  # padding sees only padding
    ]


def test_groups_respect_max_length_and_deduplicate():
    ctx = list(range(10))
    pairs = [(ctx, [100 + i] * 4) for i in range(5)] + [(ctx, [100] * 4)]  # the last is a duplicate of the first
    groups = plan_groups(pairs, max_length=17)
    assert all(g.length <= 17 for g in groups)
    assert sorted(i for g in groups for ids in g.request_ids for i in ids) == list(range(6))
    assert [0, 5] in [ids for g in groups for ids in g.request_ids]
    too_long = plan_groups([(list(range(30)), [7, 8, 9])], max_length=12)[0]
    assert too_long.context == list(range(20, 30)) and too_long.length == 12
