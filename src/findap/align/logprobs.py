"""Log-probabilities of response tokens, computed chunk by chunk through the LM head.

The naive route (full logits, log_softmax, gather) materialises a (tokens x vocab) fp32 tensor, and autograd keeps
it for the backward pass: 4096 tokens x 49,152 vocab is 800 MB per row, more than the 135M model itself. Here only
the hidden states at response positions go through the head, in chunks; the forward keeps one logsumexp per token
and the backward recomputes each chunk's logits (one extra matmul per chunk) instead of storing them.
"""
from __future__ import annotations

import torch

from findap.align.packing import PackedRow, attention_mask, row_tensors


def _compute_dtype(device_type: str, dtype: torch.dtype) -> torch.dtype:
    # Custom autograd functions do not inherit autocast in backward; pick the matmul dtype explicitly.
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return dtype


class _ChunkedTargetLogprob(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, targets, chunk: int, mm_dtype: torch.dtype):
        out = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        lse = torch.empty_like(out)
        w = weight.to(mm_dtype)
        for s in range(0, hidden.shape[0], chunk):
            logits = (hidden[s : s + chunk].to(mm_dtype) @ w.T).float()
            lse[s : s + chunk] = torch.logsumexp(logits, dim=-1)
            out[s : s + chunk] = logits.gather(1, targets[s : s + chunk, None]).squeeze(1) - lse[s : s + chunk]
        ctx.save_for_backward(hidden, weight, targets, lse)
        ctx.chunk, ctx.mm_dtype = chunk, mm_dtype
        return out

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, targets, lse = ctx.saved_tensors
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.zeros_like(hidden) if need_h else None
        grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device) if need_w else None
        w = weight.to(ctx.mm_dtype)
        for s in range(0, hidden.shape[0], ctx.chunk):
            h = hidden[s : s + ctx.chunk].to(ctx.mm_dtype)
            g = grad_out[s : s + ctx.chunk].float()
            # d logp(t)/d logits = onehot(t) - softmax(logits)
            probs = torch.exp((h @ w.T).float() - lse[s : s + ctx.chunk, None])
            dlogits = probs.mul_(-g[:, None])
            dlogits.scatter_add_(1, targets[s : s + ctx.chunk, None], g[:, None])
            dlogits = dlogits.to(ctx.mm_dtype)
            if need_h:
                grad_h[s : s + ctx.chunk] = (dlogits @ w).to(hidden.dtype)
            if need_w:
                grad_w += (dlogits.T @ h).float()
        return grad_h, (grad_w.to(weight.dtype) if need_w else None), None, None, None


def target_logprobs(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int = 1024):
    """log p(target_i | hidden_i) for (N, H) hidden states and an LM head weight of shape (V, H)."""
    mm_dtype = _compute_dtype(hidden.device.type, weight.dtype)
    return _ChunkedTargetLogprob.apply(hidden, weight, targets, chunk, mm_dtype)


def _mask_dtype(model) -> torch.dtype:
    # sdpa takes a bool mask; eager adds the mask to the attention scores, so it needs an additive float mask.
    impl = getattr(model.config, "_attn_implementation", "sdpa")
    return torch.bool if impl in ("sdpa", "flex_attention") else torch.float32


def row_logprobs(model, row: PackedRow, chunk: int = 1024) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log-probs and token counts of every response in a packed row, both shaped (2 * pairs,).

    Entry 2k is the chosen response of the row's k-th pair, 2k+1 its rejected one.
    """
    device = next(model.parameters()).device
    t = row_tensors(row, device)
    mask = attention_mask(row, _mask_dtype(model)).to(device)
    decoder = model.get_decoder()
    hidden = decoder(
        input_ids=t["input_ids"], position_ids=t["position_ids"], attention_mask=mask, use_cache=False
    ).last_hidden_state[0]
    weight = model.get_output_embeddings().weight
    per_token = target_logprobs(hidden[t["sources"]], weight, t["targets"], chunk)
    n_seq = 2 * len(row.pair_ids)
    sums = torch.zeros(n_seq, dtype=per_token.dtype, device=device).index_add(0, t["seq_index"], per_token)
    counts = torch.bincount(t["seq_index"], minlength=n_seq)
    return sums, counts
