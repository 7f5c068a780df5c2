"""Packed rows must give every document exactly its unpacked logits and loss, on every attention backend here.

If a transformers or torch release changes how masks or position_ids are handled and documents start to see each
other, these tests fail. The negative control shows what leaking looks like (a 2-D mask of ones).
"""
import pytest
import torch

from findap.models import tiny_llama
from findap.train.attention import FLAT_BACKENDS, model_inputs
from findap.train.loss import token_loss_sum
from findap.train.packing import collate_flat, collate_rows, pack_documents
from helpers.attention import set_backend
from helpers.sample_data import ectsum_texts, fpb_conversations, gsm8k_conversations
from findap.train.tokenize import tokenize_examples

SEQ = 384
BACKENDS = ["varlen", "sdpa", "eager", "position_ids", "flex_attention"]


@pytest.fixture(scope="module")
def setup():
    model, tok = tiny_llama(seed=1)
    examples = fpb_conversations(3) + gsm8k_conversations(2) + ectsum_texts(1)
    docs = tokenize_examples(examples, tok, 100)[:9]  # ECTSum is split into 100-token chunks
    rows = pack_documents(docs, SEQ, seed=None)
    assert len(rows) >= 2 and max(len(r) for r in rows) >= 3
    with torch.no_grad():
        # Hidden states fully determine the logits (the LM head is position-wise); comparing them is cheaper.
        ref_logits = [model.get_decoder()(input_ids=torch.tensor([d["input_ids"]]), use_cache=False)
                      .last_hidden_state[0] for d in docs]
        ref = [model(input_ids=torch.tensor([d["input_ids"]]), labels=torch.tensor([d["labels"]]), use_cache=False)
               for d in docs]
    n = [sum(l != -100 for l in d["labels"][1:]) for d in docs]
    ref_loss = sum(float(r.loss) * k for r, k in zip(ref, n)) / sum(n)  # HF's own per-document mean, re-weighted
    return model, tok, docs, rows, ref_logits, ref_loss


def packed_logits(model, batch, backend):
    return model.get_decoder()(**model_inputs(batch, backend, "cpu")).last_hidden_state


def split_by_document(logits, rows, flat):
    out, t = [], 0
    for r, row in enumerate(rows):
        if not flat:
            t = 0
        for d in row:
            n = len(d["input_ids"])
            out.append((d, logits[0 if flat else r, t:t + n]))
            t += n
    return out


@pytest.mark.parametrize("backend", BACKENDS)
def test_packed_equals_unpacked(setup, backend):
    model, tok, docs, rows, ref_logits, ref_loss = setup
    set_backend(model, backend)
    try:
        flat = backend in FLAT_BACKENDS
        batch = collate_flat(rows) if flat else collate_rows(rows, SEQ, tok.pad_token_id)
        with torch.no_grad():
            logits = packed_logits(model, batch, backend)
            loss_sum, count = token_loss_sum(model, model_inputs(batch, backend, "cpu"), batch["labels"])
        for d, got in split_by_document(logits, rows, flat):
            i = next(k for k, x in enumerate(docs) if x is d)
            torch.testing.assert_close(got, ref_logits[i], atol=2e-5, rtol=1e-5)
        assert float(loss_sum) / count == pytest.approx(ref_loss, abs=1e-5)
    finally:
        set_backend(model, "sdpa")


def test_negative_control_two_d_mask_leaks(setup):
    """position_ids restart but a 2-D all-ones mask is passed: transformers then lets documents attend across."""
    model, tok, docs, rows, ref_logits, _ = setup
    batch = collate_rows(rows, SEQ, tok.pad_token_id)
    with torch.no_grad():
        logits = model.get_decoder()(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                                     attention_mask=torch.ones_like(batch["input_ids"]), use_cache=False
                                     ).last_hidden_state
    worst = 0.0
    for d, got in split_by_document(logits, rows, flat=False):
        i = next(k for k, x in enumerate(docs) if x is d)
        worst = max(worst, float((got - ref_logits[i]).abs().max()))
    assert worst > 1e-2  # the later documents of a row see the earlier ones


def test_varlen_scores_padded_batches_like_sdpa(setup):
    """A model loaded for training (findap_varlen) takes ordinary padded batches too, so scoring or generating from
    it needs no switch of its attention implementation: same hidden states and greedy tokens as SDPA."""
    model, tok, docs, _, _, _ = setup
    prompts = [d["input_ids"][:n] for d, n in zip(docs[:3], (7, 19, 12))]
    longest = max(map(len, prompts))
    ids = torch.tensor([[tok.pad_token_id] * (longest - len(p)) + p for p in prompts])  # left padding, as generate
    mask = torch.tensor([[0] * (longest - len(p)) + [1] * len(p) for p in prompts])
    out = {}
    try:
        for backend in ("sdpa", "varlen"):
            set_backend(model, backend)
            with torch.no_grad():
                hidden = model.get_decoder()(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state
                tokens = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, do_sample=False,
                                        pad_token_id=tok.pad_token_id)
            out[backend] = (hidden * mask[..., None], tokens)
    finally:
        set_backend(model, "sdpa")
    torch.testing.assert_close(out["varlen"][0], out["sdpa"][0], atol=2e-5, rtol=1e-5)
    assert torch.equal(out["varlen"][1], out["sdpa"][1])
