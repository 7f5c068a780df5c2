"""Token counts with the recipe model's tokenizer: CPT text as is, IT conversations through the chat template
(what the trainer will actually see, system prompt included)."""
from __future__ import annotations

from typing import Sequence


def rendered(example: dict, tokenizer) -> str:
    if example["kind"] == "cpt":
        return example["text"]
    return tokenizer.apply_chat_template(example["messages"], tokenize=False)


def count_tokens(examples: Sequence[dict], tokenizer, batch_size: int = 512, progress: bool = False) -> dict[str, int]:
    from findap.progress_bars import progress_bar

    starts = progress_bar(range(0, len(examples), batch_size), enabled=progress, desc="counting tokens", unit="batch")
    counts: dict[str, int] = {}
    for start in starts:
        batch = examples[start : start + batch_size]
        ids = tokenizer([rendered(ex, tokenizer) for ex in batch], add_special_tokens=False, verbose=False)
        for ex, row in zip(batch, ids["input_ids"]):
            counts[ex["id"]] = len(row)
    return counts
