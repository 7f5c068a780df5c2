"""Token losses computed on hidden states, only at trained positions, in chunks.

Why not `model(..., labels=...)`: that materialises fp32 logits for every position (2048 x 49152 x 4 B = 400 MB
per row) and runs the LM head on prompt tokens that carry no loss. Here the decoder runs once, the hidden states of
trained positions are gathered, and the LM head + cross-entropy run chunk by chunk. In training the chunked
function computes its gradient in the forward pass (softmax - one-hot), so no chunk's logits outlive the chunk and
no matmul is recomputed.

`token_loss_sum` returns the SUM of token losses: the loop divides by the trained-token count of the whole
accumulation window, so the loss of a step does not depend on packing or micro-batching.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from findap.train.packing import IGNORE
from findap.training.lora import base_model


def decoder_hidden(model, inputs: dict) -> torch.Tensor:
    """Final hidden states (B, T, d) of the decoder stack (the causal LM without its head)."""
    return base_model(model).get_decoder()(**inputs).last_hidden_state


def lm_head(model) -> torch.nn.Module:
    return base_model(model).get_output_embeddings()


def _chunk_logits(h: torch.Tensor, head: torch.nn.Module) -> torch.Tensor:
    return F.linear(h, head.weight, head.bias).float()


class _ChunkedLinearCrossEntropy(torch.autograd.Function):
    """Sum of cross-entropies of `h @ W.T (+ b)` against `targets`, gradient computed during forward."""

    @staticmethod
    def forward(ctx, h, weight, bias, targets, chunk):
        grad_h = torch.empty_like(h)
        grad_w = None  # the first chunk's product becomes it: no zero-fill and no add of a vocab x hidden buffer
        grad_b = torch.zeros_like(bias) if bias is not None else None
        total = torch.zeros((), dtype=torch.float32, device=h.device)
        for s in range(0, h.shape[0], chunk):
            hc, tc = h[s:s + chunk], targets[s:s + chunk]
            logp = torch.log_softmax(F.linear(hc, weight, bias).float(), dim=-1)
            total -= logp.gather(1, tc[:, None]).sum()
            probs = logp.exp_()  # in place: one full-vocabulary buffer per chunk
            probs[torch.arange(tc.shape[0], device=h.device), tc] -= 1.0
            g = probs.to(torch.get_autocast_dtype(h.device.type) if torch.is_autocast_enabled(h.device.type)
                         else h.dtype)
            grad_h[s:s + chunk] = (g @ weight.to(g.dtype)).to(h.dtype)
            part = (g.t() @ hc.to(g.dtype)).to(weight.dtype)
            grad_w = part if grad_w is None else grad_w.add_(part)
            if grad_b is not None:
                grad_b += g.sum(0).to(bias.dtype)
            # Free this chunk's full-vocabulary buffers now: rebinding them in the next iteration would keep them
            # alive while that chunk's logits are built (measured: docs/results.md, "Trainer components").
            del logp, probs, g, part
        if grad_w is None:  # no rows at all
            grad_w = torch.zeros_like(weight)
        ctx.save_for_backward(grad_h, grad_w, *( [grad_b] if grad_b is not None else []))
        ctx.has_bias = grad_b is not None
        return total

    @staticmethod
    def backward(ctx, grad_out):
        # In place: the saved gradients are this function's own buffers and are read exactly once (a vocab x hidden
        # copy per micro-batch saved). Autograd checks their version when they are unpacked above, not after.
        saved = ctx.saved_tensors
        grad_b = saved[2].mul_(grad_out) if ctx.has_bias else None
        return saved[0].mul_(grad_out), saved[1].mul_(grad_out), grad_b, None, None


def selected_hidden(hidden: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Hidden states that predict a trained token (position t predicts labels[t + 1]) and their targets."""
    targets = labels[:, 1:]
    keep = targets != IGNORE
    return hidden[:, :-1][keep], targets[keep]


def token_loss_sum(model, inputs: dict, labels: torch.Tensor, *, chunk: int = 2048) -> tuple[torch.Tensor, int]:
    """(sum of token cross-entropies, number of trained tokens) of one packed batch.

    Under FSDP run it through `parallel.run_as_forward` (findap.training.parallel): it reads the LM head itself.
    """
    hidden = decoder_hidden(model, inputs)
    h, targets = selected_hidden(hidden, labels.to(hidden.device))
    if targets.numel() == 0:
        return hidden.sum() * 0.0, 0
    head = lm_head(model)
    if torch.is_grad_enabled() and (h.requires_grad or head.weight.requires_grad):
        loss = _ChunkedLinearCrossEntropy.apply(h, head.weight, head.bias, targets, chunk)
    else:
        loss = sum(F.cross_entropy(_chunk_logits(h[s:s + chunk], head), targets[s:s + chunk], reduction="sum")
                   for s in range(0, h.shape[0], chunk))
    return loss, int(targets.numel())
