"""The one deterministic train / eval split of every dataset that is both trained on and evaluated.

FPB, FiNER, FOMC, German credit, TAT-QA, CFA-Easy, GSM8K and ECTSum are training sources (FinTrain, curate) and
evaluation tasks (FinEval, eval); distillation draws prompts from some of them too. All three sides split them
with this function, on the same dataset key and the same input text, so a row is on exactly one side:

    bucket = int(sha256("<dataset>\\x00<normalised input>")[:16 hex], 16) / 16**16   in [0, 1)
    reserved for eval  <=>  bucket < fraction          (curate.eval_holdout, default 0.3)

FinEval's tasks in hash mode (CarveSpec.hash_key) score the docs with bucket < dev + unseen (dev first, then
unseen) and use the rest as the few-shot pool; a recipe whose eval_holdout is below that fails to load
(findap.curate.holdout.check_recipe_holdout). The hash depends on the text only, not on file order, row count
or platform, so the split is stable when a file grows, and exact duplicates always land on the same side.

| dataset key | input text hashed                                          |
|-------------|------------------------------------------------------------|
| fpb         | the sentence (before the last `@`)                          |
| fomc        | the `sentence` cell                                         |
| finer       | the sentence's tokens joined by single spaces               |
| credit      | the raw `german.data` line                                  |
| tatqa       | the report: `tatqa_report_text(item)` (table + paragraphs)  |
| cfa         | the item's `text` field (question with its choices)         |
| gsm8k       | the `question` field                                        |
| ectsum      | the transcript file's text                                  |
"""
from __future__ import annotations

import hashlib
import re

from findap.datasets.tatqa import report_text as tatqa_report_text  # the report hash key, parsed with the dataset

_SPACES = re.compile(r"\s+")
DEFAULT_EVAL_FRACTION = 0.3  # curate.eval_holdout's default; FinEval's hash-mode tasks use dev + unseen = 0.3


def normalize(text: str) -> str:
    """Whitespace-collapsed, lower-cased text: the key used for hashing, exact dedup and holdout splits."""
    return _SPACES.sub(" ", text).strip().lower()


def holdout_bucket(dataset: str, text: str) -> float:
    """Where a row of `dataset` with input `text` falls in [0, 1)."""
    digest = hashlib.sha256(f"{dataset}\x00{normalize(text)}".encode()).hexdigest()[:16]
    return int(digest, 16) / float(16**16)


def reserved_for_eval(dataset: str, text: str, fraction: float = DEFAULT_EVAL_FRACTION) -> bool:
    """True when this row belongs to the evaluation portion of `dataset`."""
    return holdout_bucket(dataset, text) < fraction


def hash_role(dataset: str, text: str, dev: float, unseen: float) -> str:
    """FinEval's role of a row: "dev" (bucket < dev), "unseen" (< dev + unseen) or "train" (few-shot pool)."""
    bucket = holdout_bucket(dataset, text)
    return "dev" if bucket < dev else "unseen" if bucket < dev + unseen else "train"


__all__ = ["DEFAULT_EVAL_FRACTION", "hash_role", "holdout_bucket", "normalize", "reserved_for_eval",
           "tatqa_report_text"]
