"""Turning requests into tokens and model output back into text, the same way for every backend.

Two details decide whether scores match other tools:
- log-likelihood: a context's trailing whitespace is moved onto the continuation before tokenising, and the
  continuation's tokens are those of tokenize(context + continuation) beyond the context's tokens (the
  lm-evaluation-harness convention). " Paris" after "Answer:" then scores the single token " Paris", not
  " " + "Paris".
- generation: chat-message prompts go through the tokenizer's chat template with the assistant header appended;
  output is cut at the first stop string.
"""
from __future__ import annotations

from typing import Sequence

from findap.engines.base import Prompt


def move_trailing_space(context: str, continuation: str) -> tuple[str, str]:
    """Move the context's trailing whitespace to the continuation's front (word-boundary tokens stay whole)."""
    stripped = context.rstrip()
    return stripped, context[len(stripped):] + continuation


def encode_pair(tokenizer, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """(context tokens, continuation tokens) for scoring `continuation` after `context`."""
    if not continuation:
        raise ValueError("loglikelihood: the continuation is empty; there is nothing to score")
    context, continuation = move_trailing_space(context, continuation)
    if not context:
        # Nothing to condition on: score after the BOS (or EOS) token, as the model saw at document starts.
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        return [start], tokenizer.encode(continuation, add_special_tokens=False)
    whole = tokenizer.encode(context + continuation)
    context_ids = tokenizer.encode(context)
    return context_ids, whole[len(context_ids):]


def render_prompt(tokenizer, prompt: Prompt) -> str:
    """The exact text the model sees: plain strings as-is, message lists through the chat template."""
    if isinstance(prompt, str):
        return prompt
    if not isinstance(prompt, (list, tuple)) or not all(isinstance(m, dict) for m in prompt):
        raise TypeError(f"a prompt is a string or a list of {{'role', 'content'}} dicts, not {type(prompt).__name__}")
    if getattr(tokenizer, "chat_template", None) is None:
        raise ValueError(
            "this tokenizer has no chat template, so chat-message prompts cannot be rendered; "
            "send a plain-text prompt instead"
        )
    return tokenizer.apply_chat_template(list(prompt), add_generation_prompt=True, tokenize=False)


def encode_prompt(tokenizer, text: str) -> list[int]:
    """Token ids of a rendered prompt. Chat templates write their own BOS, so none is added twice."""
    bos = tokenizer.bos_token
    add_special = not (bos and text.startswith(bos))
    return tokenizer.encode(text, add_special_tokens=add_special)


def fitted_prompt_ids(tokenizer, text: str, max_new_tokens: int, max_length: int) -> list[int]:
    """`encode_prompt`, left-truncated so `max_new_tokens` still fit in `max_length` (at least one prompt token):
    the question sits at the end of a long prompt. Every engine that feeds token ids uses it (hf, vllm)."""
    return encode_prompt(tokenizer, text)[-max(1, max_length - max_new_tokens):]


def truncate_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """Cut `text` at the earliest occurrence of any stop string (the stop string itself is dropped)."""
    if not stop:
        return text
    cut = len(text)
    for s in stop:
        if s:
            i = text.find(s)
            if i != -1:
                cut = min(cut, i)
    return text[:cut]


def normalise_stop(stop) -> tuple[str, ...] | None:
    """Accept None, one string or a sequence of strings (the OpenAI API allows both)."""
    if stop is None:
        return None
    if isinstance(stop, str):
        return (stop,)
    return tuple(s for s in stop if s)
