"""Turn preference pairs (chat prompt, chosen text, rejected text) into token ids.

The prompt is rendered with the chat template and a generation marker; each response is rendered as the assistant
turn of the same conversation, and the response tokens are what follows the longest common prefix of the prompt
and the full conversation (templates may merge tokens across the boundary; TRL does the same).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TokenizedPair:
    id: str
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]

    @property
    def n_tokens_shared(self) -> int:
        """Tokens of the pair packed with one shared prompt."""
        return len(self.prompt_ids) + len(self.chosen_ids) + len(self.rejected_ids)

    @property
    def n_tokens_separate(self) -> int:
        """Tokens of the pair packed as two documents (prompt+chosen, prompt+rejected)."""
        return 2 * len(self.prompt_ids) + len(self.chosen_ids) + len(self.rejected_ids)


def _render_ids(tokenizer, messages: list[dict], generation_prompt: bool) -> list[int]:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
    # The template already wrote any special tokens; adding them again would duplicate BOS.
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def normalise_prompt(prompt) -> list[dict]:
    """Pairs store the prompt as chat messages; a bare string is one user turn."""
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}]
    return list(prompt)


def tokenize_pair(tokenizer, pair: dict, max_length: int) -> TokenizedPair | None:
    """Token ids of one pair, or None when the prompt alone leaves no room for a response under max_length.

    Responses longer than `max_length - len(prompt)` are cut at the end (the start of a solution carries the
    reasoning that the preference is about).
    """
    messages = normalise_prompt(pair["prompt"])
    prompt_ids = _render_ids(tokenizer, messages, generation_prompt=True)
    full = {
        side: _render_ids(tokenizer, messages + [{"role": "assistant", "content": pair[side]}], False)
        for side in ("chosen", "rejected")
    }
    n_prompt = min(_common_prefix(prompt_ids, full["chosen"]), _common_prefix(prompt_ids, full["rejected"]))
    room = max_length - n_prompt
    if room < 2:
        return None
    chosen = full["chosen"][n_prompt:][:room]
    rejected = full["rejected"][n_prompt:][:room]
    if not chosen or not rejected:
        return None
    return TokenizedPair(str(pair["id"]), prompt_ids[:n_prompt], chosen, rejected)
