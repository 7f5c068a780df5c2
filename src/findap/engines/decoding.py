"""Batched decoding with a KV cache: right padding, greedy or nucleus sampling with a seed per request.

Right padding, not the usual left: the prefill then needs no attention mask at all (a row's pads come after its
prompt, so causal attention never lets a prompt token see one), which lets SDPA run its causal kernel instead of a
masked one over the whole padded square, which also computes the upper triangle (the measured gain:
docs/results.md, "Evaluation and inference memory"). The pads then sit between a row's
prompt and its new tokens; the decoding steps' 2-D mask hides them and position_ids carry each row's true offsets.

Written by hand rather than with `model.generate` because callers need per-request settings inside one batch:
each row has its own temperature, top-p, token budget, stop strings and random generator, so a seeded request
samples the same text whichever batch it lands in (up to floating-point differences between batch shapes).
"""
from __future__ import annotations

import inspect
import secrets
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from findap.engines.scoring import has_plain_head
from findap.engines.text import truncate_at_stop


@dataclass
class RowSettings:
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] | None = None
    seed: int | None = None


def nucleus_filter(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of tokens whose probability mass reaches top_p (always at least the top token)."""
    if top_p >= 1.0:
        return logits
    sorted_logits, order = logits.sort(descending=True)
    probs = sorted_logits.softmax(-1)
    mass_before = probs.cumsum(-1) - probs
    sorted_logits[mass_before >= top_p] = float("-inf")
    return torch.full_like(logits, float("-inf")).scatter(0, order, sorted_logits)


def _row_generator(seed: int | None, device: torch.device) -> torch.Generator:
    g = torch.Generator(device=device)
    g.manual_seed(seed if seed is not None else secrets.randbits(63))
    return g


def _stop_hit(tokenizer, ids: list[int], stop: tuple[str, ...]) -> bool:
    # Only the tail can hold a stop string that just appeared; every token decodes to >= 1 character.
    tail = ids[-(max(len(s) for s in stop) + 2) :]
    text = tokenizer.decode(tail, skip_special_tokens=True)
    return any(s in text for s in stop)


def cache_argument(model) -> str:
    """The name `model.forward` takes the KV cache under: transformers 5.24 renamed `past_key_values` to `cache`
    (the old name warns, and goes in 5.40); earlier 5.x releases only know `past_key_values`."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft wraps forward(*args, **kw)
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def returned_cache(out):
    """The KV cache of a forward's output, under either name (see cache_argument)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else out.past_key_values


@torch.no_grad()  # without it every layer's activations stay alive for a backward that never comes (no_grad, not
# inference_mode: FinEval selection decodes the model being trained, whose gathered FSDP weights must stay usable)
def generate_batch(
    model,
    tokenizer,
    prompts: Sequence[list[int]],
    settings: Sequence[RowSettings],
    eos_ids: set[int],
    pad_id: int,
    agree: Callable[[list[int]], list[int]] | None = None,
) -> list[list[int]]:
    """Generated token ids per prompt (without the EOS that ended it).

    `agree` (several processes running one sharded model, whose every forward is a collective): called with each
    decoding step's chosen tokens (one per live row) on every rank, it returns the tokens all ranks continue with
    (rank 0's), so every rank stops each row at the same step and runs the same number of forwards.
    """
    device = next(model.parameters()).device
    B, T = len(prompts), max(len(p) for p in prompts)
    input_ids = torch.full((B, T), pad_id, dtype=torch.long)
    attention = torch.zeros((B, T), dtype=torch.long)
    for b, p in enumerate(prompts):
        input_ids[b, : len(p)] = torch.tensor(p)
        attention[b, : len(p)] = 1
    input_ids, attention = input_ids.to(device), attention.to(device)
    lengths = torch.tensor([len(p) for p in prompts], device=device)

    generators = [_row_generator(s.seed, device) if s.temperature > 0 else None for s in settings]
    generated: list[list[int]] = [[] for _ in range(B)]
    live = [b for b in range(B) if settings[b].max_new_tokens > 0]  # prompt rows still generating, in batch order
    logits, cache = _prefill(model, input_ids, lengths)
    next_pos = lengths[:, None]  # each row's next position: its prompt length, wherever its cache slot is
    cache_kw = cache_argument(model)
    if len(live) < B:
        logits, attention, next_pos = _keep_rows(cache, torch.tensor(live, device=device), logits, attention, next_pos)
    while live:
        greedy = logits.argmax(-1).tolist()
        next_tokens = []
        for i, b in enumerate(live):
            s = settings[b]
            next_tokens.append(greedy[i] if s.temperature <= 0 else _sample(logits[i].float(), s, generators[b]))
        if agree is not None:
            next_tokens = agree(next_tokens)
        still = []
        for i, b in enumerate(live):
            s, tok = settings[b], next_tokens[i]
            if tok in eos_ids:
                continue
            generated[b].append(tok)
            if len(generated[b]) < s.max_new_tokens and not (s.stop and _stop_hit(tokenizer, generated[b], s.stop)):
                still.append(i)
        if not still:
            break
        if len(still) < len(live):
            # Finished rows leave the batch (and the KV cache): long generations stop paying for short ones.
            keep = torch.tensor(still, device=device)
            logits, attention, next_pos = _keep_rows(cache, keep, logits, attention, next_pos)
            next_tokens = [next_tokens[i] for i in still]
            live = [live[i] for i in still]
        attention = torch.cat([attention, attention.new_ones((len(live), 1))], dim=1)
        out = model(
            input_ids=torch.tensor(next_tokens, device=device)[:, None],
            attention_mask=attention,
            position_ids=next_pos,
            use_cache=True,
            **{cache_kw: cache},
        )
        cache, next_pos = returned_cache(out), next_pos + 1
        logits = out.logits[:, -1]
    return generated


def _prefill(model, input_ids: torch.Tensor, lengths: torch.Tensor):
    """(next-token logits at each row's last prompt token, KV cache) for a right-padded batch, in one causal
    forward without a mask. Only the B positions read are projected onto the vocabulary."""
    positions = torch.arange(input_ids.shape[1], device=input_ids.device).expand_as(input_ids)
    rows, last = torch.arange(len(lengths), device=input_ids.device), lengths - 1
    if has_plain_head(model):
        out = model.get_decoder()(input_ids=input_ids, position_ids=positions, use_cache=True)
        logits = model.get_output_embeddings()(out.last_hidden_state[rows, last])
        return logits, returned_cache(out)
    kept, where = torch.unique(last, return_inverse=True)
    out = model(input_ids=input_ids, position_ids=positions, use_cache=True, logits_to_keep=kept)
    return out.logits[rows, where], returned_cache(out)


def _keep_rows(cache, keep: torch.Tensor, logits, attention, next_pos):
    cache.batch_select_indices(keep)
    return logits[keep], attention[keep], next_pos[keep]


def _sample(logits: torch.Tensor, s: RowSettings, generator: torch.Generator) -> int:
    filtered = nucleus_filter(logits / s.temperature, s.top_p)
    return int(torch.multinomial(filtered.softmax(-1), 1, generator=generator))


def decode_output(tokenizer, ids: list[int], stop: tuple[str, ...] | None) -> str:
    return truncate_at_stop(tokenizer.decode(ids, skip_special_tokens=True), stop)
