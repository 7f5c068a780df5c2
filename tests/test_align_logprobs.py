"""Packed, prompt-shared, chunked response log-probs equal plain one-sequence-at-a-time log-probs."""
import pytest
import torch

from findap.align.encode import TokenizedPair, tokenize_pair
from findap.align.logprobs import row_logprobs, target_logprobs
from findap.align.packing import pack_pairs
from findap.models import tiny_llama

PAIRS = [
    {"id": "a", "prompt": [{"role": "user", "content": "What is 12% of 250?"}],
     "chosen": "Step 1: 0.12 * 250 = 30.\nAnswer: 30", "rejected": "Step 1: 250 / 12 = 20.8.\nAnswer: 20.8"},
    {"id": "b", "prompt": [{"role": "user", "content": "A bond pays a 5% coupon on 1,000. Coupon?"}],
     "chosen": "Step 1: 5% of 1,000 is 50.\nAnswer: 50", "rejected": "Answer: 500"},
    {"id": "c", "prompt": "Which premium explains the Treasury vs small issuer spread? A: Inflation B: Maturity C: Liquidity",
     "chosen": "Step 1: Both are 30-year bonds, so maturity is equal.\nStep 2: The small issuer trades less.\nAnswer: C",
     "rejected": "Answer: B"},
]


@pytest.fixture(scope="module")
def model_and_tok():
    return tiny_llama(seed=0)


def reference_logprob(model, ids: list[int], n_prompt: int) -> float:
    """Plain forward over one sequence, full log_softmax: the independent reference."""
    x = torch.tensor([ids])
    with torch.no_grad():
        logits = model(input_ids=x).logits[0].float()
    logp = torch.log_softmax(logits[:-1], -1).gather(1, x[0, 1:, None]).squeeze(1)
    return float(logp[n_prompt - 1 :].sum())


@pytest.mark.parametrize("share_prompt", [True, False])
def test_packed_equals_unpacked(model_and_tok, share_prompt):
    model, tok = model_and_tok
    pairs = [tokenize_pair(tok, p, max_length=512) for p in PAIRS]
    rows = pack_pairs(pairs, row_tokens=4096, share_prompt=share_prompt)
    assert len(rows) == 1 and len(rows[0].pair_ids) == 3  # all three pairs really share one row
    with torch.no_grad():
        sums, counts = row_logprobs(model, rows[0], chunk=7)  # odd chunk: exercises the chunk edges
    by_id = {p.id: p for p in pairs}
    for k, pid in enumerate(rows[0].pair_ids):
        p = by_id[pid]
        for j, resp in enumerate((p.chosen_ids, p.rejected_ids)):
            expected = reference_logprob(model, p.prompt_ids + resp, len(p.prompt_ids))
            assert counts[2 * k + j] == len(resp)
            assert sums[2 * k + j].item() == pytest.approx(expected, abs=2e-4)


def test_tokenized_pair_round_trips(model_and_tok):
    _, tok = model_and_tok
    p = tokenize_pair(tok, PAIRS[0], max_length=512)
    assert tok.decode(p.chosen_ids).startswith("Step 1: 0.12")
    assert "What is 12% of 250?" in tok.decode(p.prompt_ids)
    assert tokenize_pair(tok, PAIRS[0], max_length=len(p.prompt_ids) + 1) is None  # no room for a response
    short = tokenize_pair(tok, PAIRS[0], max_length=len(p.prompt_ids) + 3)
    assert len(short.chosen_ids) == 3 and len(short.rejected_ids) == 3


def test_chunked_gradient_matches_full_logits():
    torch.manual_seed(0)
    h = torch.randn(13, 8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 8, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, 50, (13,))
    g = torch.randn(13, dtype=torch.float64)
    ours = target_logprobs(h, w, t, chunk=4)
    (ours.double() * g).sum().backward()
    gh, gw = h.grad.clone(), w.grad.clone()
    h.grad = w.grad = None
    ref = torch.log_softmax(h @ w.T, -1).gather(1, t[:, None]).squeeze(1)
    (ref * g).sum().backward()
    assert torch.allclose(ours.double(), ref, atol=1e-5)
    assert torch.allclose(gh, h.grad, atol=1e-5) and torch.allclose(gw, w.grad, atol=1e-5)


def test_pack_respects_row_budget():
    pairs = [TokenizedPair(str(i), [1] * 10, [2] * (5 + i), [3] * 4) for i in range(6)]
    rows = pack_pairs(pairs, row_tokens=48, share_prompt=True)
    assert sorted(pid for r in rows for pid in r.pair_ids) == [str(i) for i in range(6)]
    assert all(len(r) <= 48 for r in rows)
    # sizes 19..24, first-fit decreasing: 24+23, 22+21, 20+19
    assert [sorted(r.pair_ids) for r in rows] == [["4", "5"], ["2", "3"], ["0", "1"]]
    assert len(pack_pairs(pairs, row_tokens=48, share_prompt=False)) == 6  # 29..34 tokens each: one per row
