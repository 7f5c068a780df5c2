"""The chunked LM-head loss against torch's own cross-entropy on full logits: value and gradients."""
import pytest
import torch
import torch.nn.functional as F

from findap.models import tiny_llama
from findap.train.loss import token_loss_sum
from findap.train.packing import IGNORE


def batch_of(tok, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, len(tok), (2, 48), generator=g)
    labels = ids.clone()
    labels[:, :10] = IGNORE  # a masked prompt
    labels[1, 30:] = IGNORE
    return ids, labels


def reference_loss(model, ids, labels):
    logits = model(input_ids=ids, use_cache=False).logits[:, :-1].float()
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE,
                           reduction="sum")


@pytest.mark.parametrize("chunk,bias", [(7, False), (4096, False), (5, True)])
def test_chunked_loss_and_grads_match_full_logits(chunk, bias):
    model, tok = tiny_llama(seed=3)
    model.lm_head.bias = torch.nn.Parameter(torch.randn(model.lm_head.out_features) * 0.1) if bias else None
    ids, labels = batch_of(tok)
    ref = reference_loss(model, ids, labels)
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    got, count = token_loss_sum(model, {"input_ids": ids, "use_cache": False}, labels, chunk=chunk)
    got.backward()
    assert count == int((labels[:, 1:] != IGNORE).sum()) == 38 + 20  # positions 10..47 and 10..29
    assert float(got.detach()) == pytest.approx(float(ref), rel=1e-5)
    for n, p in model.named_parameters():
        # fp32 sums in another order: allow rounding relative to the tensor's largest gradient.
        torch.testing.assert_close(p.grad, ref_grads[n], atol=2e-5 * float(ref_grads[n].abs().max()), rtol=1e-4,
                                   msg=n)


def test_bf16_autocast_loss_tracks_fp32_reference():
    """The training path (bf16 matmuls, fp32 softmax and accumulation) stays within bf16 rounding of fp32."""
    model, tok = tiny_llama(seed=3)
    ids, labels = batch_of(tok)
    ref = reference_loss(model, ids, labels)
    ref.backward()
    ref_grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = token_loss_sum(model, {"input_ids": ids, "use_cache": False}, labels, chunk=16)
    got.backward()
    assert got.dtype == torch.float32
    assert float(got.detach()) == pytest.approx(float(ref), rel=5e-3)
    for n, p in model.named_parameters():
        cos = F.cosine_similarity(p.grad.flatten(), ref_grads[n].flatten(), dim=0)
        assert cos > 0.99, n
