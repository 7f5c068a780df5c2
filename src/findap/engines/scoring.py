"""Log-likelihood scoring on a local transformers model, with continuations that share a context packed together.

Multiple-choice tasks ask for the same context with several continuations. Instead of one padded row per
(context, continuation) as lm-evaluation-harness does, each context becomes ONE row holding the context once and
then every continuation (minus its last token, which is only ever a target):

    row:        c0 c1 c2 c3 | a0 a1 | b0 b1 b2
    positions:   0  1  2  3 |  4  5 |  4  5  6       each continuation restarts right after the context
    attends to: causal ctx  | ctx + own tokens | ctx + own tokens   (never another continuation)

Continuation a = (a0 a1 a2) is scored from the logits at c3 (predicts a0), a0 (a1) and a1 (a2). With single-token
continuations (letter choices) the row is just the context and every choice is read from its last position: one
forward per shared context. The mask is a 4-D boolean (query x key) mask, which transformers passes to the
attention kernel as-is; it is built only for packed rows (a right-padded batch needs none: causal attention alone
keeps real tokens off the padding after them), and the token budget bounds its rows x length x length bytes. Only
the hidden states at target positions go through the LM head and log-softmax: the vocabulary projection is the
biggest activation, and most positions are never read.
"""
from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass, field
from typing import Iterator, Sequence

import torch

from findap.engines.base import LoglikelihoodResult
from findap.engines.token_budget import length_sorted_batches

# Model families whose causal-LM head is exactly `lm_head(decoder(x))` (no logit soft-capping or scaling), so the
# head can be applied to the few target positions only. Others fall back to the full forward.
_PLAIN_HEAD_MODEL_TYPES = {"llama", "mistral", "qwen2", "qwen3", "phi3", "olmo2", "smollm3", "gpt_neox", "gpt2"}


@dataclass
class ContextGroup:
    """One packed row: a context and the continuations scored after it (each with the request indices it answers)."""

    context: list[int]
    continuations: list[tuple[int, ...]] = field(default_factory=list)
    request_ids: list[list[int]] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.context) + sum(len(c) - 1 for c in self.continuations)


def plan_groups(
    pairs: Sequence[tuple[list[int], list[int]]], max_length: int, share_context: bool = True
) -> list[ContextGroup]:
    """Group encoded (context, continuation) pairs into rows of at most `max_length` tokens.

    Identical pairs are scored once. Without `share_context`, every distinct pair gets its own row (the classic
    layout). A pair too long for the window keeps the end of its context, as lm-evaluation-harness does.
    """
    by_context: dict[tuple[int, ...], dict[tuple[int, ...], list[int]]] = {}
    for i, (ctx, cont) in enumerate(pairs):
        by_context.setdefault(tuple(ctx), {}).setdefault(tuple(cont), []).append(i)

    groups: list[ContextGroup] = []
    for ctx, conts in by_context.items():
        current: ContextGroup | None = None
        for cont, ids in conts.items():
            if len(cont) > max_length:
                raise ValueError(
                    f"loglikelihood: a continuation of {len(cont)} tokens does not fit max_length={max_length}"
                )
            if len(ctx) + len(cont) - 1 > max_length:  # too long even alone: left-truncate the context
                keep = max_length - (len(cont) - 1)
                groups.append(ContextGroup(list(ctx[-keep:]), [cont], [ids]))
                continue
            fits = current is not None and current.length + len(cont) - 1 <= max_length
            if current is None or not share_context or not fits:
                current = ContextGroup(list(ctx))
                groups.append(current)
            current.continuations.append(cont)
            current.request_ids.append(ids)
    return groups


def _row_layout(group: ContextGroup) -> tuple[list[int], list[int], list[int], list[list[int]]]:
    """Token ids, position ids, segment ids (0 = context, k = k-th continuation) and, per continuation, the row
    positions whose logits predict its tokens."""
    n_ctx = len(group.context)
    tokens, positions, segments = list(group.context), list(range(n_ctx)), [0] * n_ctx
    reads = []
    for k, cont in enumerate(group.continuations, start=1):
        start = len(tokens)
        body = cont[:-1]
        tokens += body
        positions += range(n_ctx, n_ctx + len(body))
        segments += [k] * len(body)
        reads.append([n_ctx - 1] + list(range(start, start + len(body))))
    return tokens, positions, segments, reads


def _packed_mask(segments: torch.Tensor) -> torch.Tensor:
    """[B, 1, T, T] boolean mask: causal, context visible to all, continuations blind to each other.

    Padding (segment -1) attends only to earlier padding so no softmax row is empty; its outputs are never read.
    """
    T = segments.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=segments.device).tril()
    q, k = segments[:, :, None], segments[:, None, :]
    visible = ((k == 0) & (q >= 0)) | (k == q)
    return (causal & visible)[:, None]


def has_plain_head(model) -> bool:
    return getattr(model.config, "model_type", None) in _PLAIN_HEAD_MODEL_TYPES and hasattr(model, "get_decoder")


@torch.inference_mode()
def score_batch(model, groups: Sequence[ContextGroup], pad_id: int) -> list[tuple[float, bool, int]]:
    """One forward over a batch of packed rows; returns (logprob, is_greedy, n_tokens) per continuation, in
    group order then continuation order."""
    device = next(model.parameters()).device
    layouts = [_row_layout(g) for g in groups]
    T = max(len(t) for t, _, _, _ in layouts)
    B = len(groups)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    position_ids = torch.zeros((B, T), dtype=torch.long)
    segments = torch.full((B, T), -1, dtype=torch.long)
    for b, (tokens, positions, segs, _) in enumerate(layouts):
        n = len(tokens)
        input_ids[b, :n] = torch.tensor(tokens)
        position_ids[b, :n] = torch.tensor(positions)
        segments[b, :n] = torch.tensor(segs)
    input_ids, position_ids, segments = input_ids.to(device), position_ids.to(device), segments.to(device)

    if all(len(g.continuations) == 1 for g in groups):
        # Nothing is shared: a plain right-padded batch. Causal attention alone keeps real tokens off the padding
        # after them, so no mask is passed: SDPA runs its causal kernel and no [B, 1, T, T] mask is built.
        inputs = dict(input_ids=input_ids)
    else:
        mask = _packed_mask(segments)
        if model.config._attn_implementation not in ("sdpa", "flex_attention"):
            mask = torch.zeros(mask.shape, dtype=model.dtype, device=device).masked_fill(
                ~mask, torch.finfo(model.dtype).min
            )
        inputs = dict(input_ids=input_ids, attention_mask=mask, position_ids=position_ids)

    rows, cols, targets, owner = [], [], [], []
    k = 0
    for b, (g, (_, _, _, reads)) in enumerate(zip(groups, layouts)):
        for cont, read in zip(g.continuations, reads):
            rows += [b] * len(read)
            cols += read
            targets += cont
            owner += [k] * len(read)
            k += 1
    rows_t, cols_t = torch.tensor(rows, device=device), torch.tensor(cols, device=device)

    if has_plain_head(model):
        hidden = model.get_decoder()(**inputs, use_cache=False).last_hidden_state
        logits = model.get_output_embeddings()(hidden[rows_t, cols_t])
    else:
        logits = _logits_at(model, inputs, rows_t, cols_t)
    # log p(target) = logit(target) - logsumexp(logits): one read of the [targets, vocab] logits instead of writing
    # a log-softmax of the same size and reading it twice (its argmax is the logits' argmax)
    logits = logits.float()
    target_t = torch.tensor(targets, device=device)
    token_lp = (logits.gather(1, target_t[:, None])[:, 0] - torch.logsumexp(logits, dim=-1)).cpu()
    greedy = (logits.argmax(-1) == target_t).cpu()

    owner_t = torch.tensor(owner)
    sums = torch.zeros(k, dtype=torch.float64).index_add_(0, owner_t, token_lp.double())
    misses = torch.zeros(k, dtype=torch.long).index_add_(0, owner_t, (~greedy).long())
    all_greedy = misses == 0
    counts = torch.bincount(owner_t, minlength=k)
    return [(float(sums[j]), bool(all_greedy[j]), int(counts[j])) for j in range(k)]


def _logits_at(model, inputs: dict, rows_t: torch.Tensor, cols_t: torch.Tensor) -> torch.Tensor:
    """Logits at (row, column) pairs for a model whose head is not a plain projection. Where the model takes
    `logits_to_keep` as positions, only the columns read are projected (the [B, T, vocab] tensor is the largest
    activation of a forward); otherwise the full forward."""
    if "logits_to_keep" not in inspect.signature(model.forward).parameters:
        return model(**inputs, use_cache=False).logits[rows_t, cols_t]
    kept, where = torch.unique(cols_t, return_inverse=True)
    return model(**inputs, use_cache=False, logits_to_keep=kept).logits[rows_t, where]


def score_groups(
    model, groups: Sequence[ContextGroup], batch_size: int, pad_id: int, autocast=contextlib.nullcontext,
    max_tokens: int | None = None,
) -> Iterator[list[tuple[int, LoglikelihoodResult]]]:
    """Score groups in length-sorted batches of at most `batch_size` rows and `max_tokens` padded tokens; yields
    (request index, result) pairs batch by batch so a caller can checkpoint (cache) each batch as it finishes."""
    for batch in length_sorted_batches([g.length for g in groups], batch_size, max_tokens):
        chosen = [groups[i] for i in batch]
        with autocast():
            scores = iter(score_batch(model, chosen, pad_id))
        done = []
        for g in chosen:
            for ids in g.request_ids:
                lp, greedy, n = next(scores)
                done += [(i, LoglikelihoodResult(lp, greedy, n)) for i in ids]
        yield done
