"""Training examples -> token documents with labels (instruction mask-out).

A document is `{"input_ids": [...], "labels": [...], "kind": "cpt"|"it", "id": str}` with labels in the
Hugging Face convention (unshifted; -100 = not trained).

* CPT text: every token trains, EOS appended so the model learns where documents end.
* IT conversation: rendered with the model's own chat template; only assistant turns train. Assistant spans are
  found by rendering prefixes of the conversation (messages[:i] with the generation prompt, then messages[:i+1]),
  which works for any template, and mapped to tokens through the fast tokenizer's character offsets, so a BPE
  merge across a turn boundary cannot shift the mask. A template that yields no assistant tokens is an error:
  otherwise the trainer silently learns nothing from IT data.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from findap.io import DataError

IGNORE = -100


class TemplateError(ValueError):
    """The chat template cannot be used for instruction mask-out."""


@dataclass
class TokenizeStats:
    cpt_docs: int = 0
    it_docs: int = 0
    chunks: int = 0  # extra chunks made by splitting long CPT documents
    truncated: int = 0  # IT conversations cut at the context length
    dropped: list[str] = field(default_factory=list)  # IT ids left with no trained token after truncation


def tokenize_cpt(text: str, tokenizer) -> tuple[list[int], list[int]]:
    ids = tokenizer(text, add_special_tokens=True)["input_ids"]  # BOS only where the tokenizer adds one
    if not ids or ids[-1] != tokenizer.eos_token_id:
        ids = ids + [tokenizer.eos_token_id]
    return ids, list(ids)


def render(messages: list[dict], tokenizer, *, generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)


def assistant_char_spans(messages: list[dict], tokenizer) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character span of every assistant turn (content + end marker)."""
    full = render(messages, tokenizer)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = render(messages[:i], tokenizer, generation_prompt=True) if i else ""
        through = render(messages[: i + 1], tokenizer)
        if len(through) <= len(render(messages[:i], tokenizer) if i else ""):
            continue  # the template rendered nothing for this assistant turn
        start, end = len(before), len(through)
        if not full.startswith(before) or not full.startswith(through):
            raise TemplateError("chat template is not prefix-stable: rendering a conversation prefix changes "
                                "earlier text, so assistant turns cannot be located")
        if end > start:
            spans.append((start, end))
    return full, spans


def tokenize_it(messages: list[dict], tokenizer) -> tuple[list[int], list[int]]:
    full, spans = assistant_char_spans(messages, tokenizer)
    if not spans:
        raise TemplateError("the conversation renders no assistant tokens (no assistant turn, or the chat template "
                            "drops assistant content): nothing would be trained")
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = enc["input_ids"], enc["offset_mapping"]
    labels = [IGNORE] * len(ids)
    for t, (a, b) in enumerate(offsets):
        if b > a and any(s <= a < e for s, e in spans):
            labels[t] = ids[t]
    if all(x == IGNORE for x in labels):
        raise TemplateError("assistant text maps to no tokens: the tokenizer's offsets do not cover the rendered turns")
    return ids, labels


def _check_example(example: dict, source: str, item: int) -> None:
    kind = example.get("kind")
    if kind == "cpt":
        if not isinstance(example.get("text"), str) or not example["text"].strip():
            raise DataError(source, item, "text", "a cpt example needs non-empty text")
    elif kind == "it":
        msgs = example.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise DataError(source, item, "messages", "an it example needs a non-empty list of messages")
        for j, m in enumerate(msgs):
            if not isinstance(m, dict) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
                raise DataError(source, item, f"messages[{j}]", "needs string 'role' and 'content'")
        if not any(m["role"] == "assistant" for m in msgs):
            raise DataError(source, item, "messages", "no assistant turn, nothing to train on")
    else:
        raise DataError(source, item, "kind", f"must be 'cpt' or 'it', got {kind!r}")


def tokenize_examples(examples: list[dict], tokenizer, seq_len: int, *, source: str = "examples",
                      stats: TokenizeStats | None = None) -> list[dict]:
    """Tokenize examples into documents of at most `seq_len` tokens (long CPT split, long IT truncated)."""
    stats = stats if stats is not None else TokenizeStats()
    docs = []
    for i, ex in enumerate(examples):
        _check_example(ex, source, i + 1)
        doc_id = str(ex.get("id", i))
        if ex["kind"] == "cpt":
            ids, labels = tokenize_cpt(ex["text"], tokenizer)
            stats.cpt_docs += 1
            pieces = range(0, len(ids), seq_len)
            stats.chunks += len(pieces) - 1
            for k in pieces:
                docs.append({"id": doc_id, "kind": "cpt", "input_ids": ids[k:k + seq_len],
                             "labels": labels[k:k + seq_len]})
        else:
            try:
                ids, labels = tokenize_it(ex["messages"], tokenizer)
            except TemplateError as err:
                raise TemplateError(f"{source}:{i + 1}: field 'messages': {err}") from None
            stats.it_docs += 1
            if len(ids) > seq_len:
                # Splitting a conversation would train answers whose question lies in another row: truncate.
                stats.truncated += 1
                ids, labels = ids[:seq_len], labels[:seq_len]
                if all(x == IGNORE for x in labels[1:]):
                    stats.dropped.append(doc_id)
                    continue
            docs.append({"id": doc_id, "kind": "it", "input_ids": ids, "labels": labels})
    return docs
