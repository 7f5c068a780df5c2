"""Decontamination: drop training examples that contain (most of) an evaluation input.

Word 13-grams as in GPT-3 and FineWeb: long enough that common phrases don't match, short enough to catch a
copied sentence. A training example is contaminated by an evaluation input when it contains at least
`min_overlap` of that input's 13-grams. Any-single-13-gram matching, the simplest rule, is wrong for long
inputs: earnings calls of the same company repeat sentences quarter after quarter (and share safe-harbor
paragraphs), so one shared sentence would remove a third of all ECTSum transcripts that merely resemble an eval
transcript. Evaluation inputs shorter than n words (FPB/FOMC sentences, TAT-QA questions) are matched as a whole
word sequence, down to `short_words` words; shorter ones would match by chance.

N-grams are stored as Python hashes (one int instead of a 13-tuple; collisions are negligible at 64 bits). Each
n-gram belongs to the first evaluation input that has it.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Iterable, Mapping

from findap.curate.records import example_text

_WORD = re.compile(r"\w+")


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _grams(tokens: list[str], n: int) -> Iterable[tuple[str, ...]]:
    return (tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


class EvalIndex:
    """n-grams of evaluation inputs -> the input (and task) they come from."""

    def __init__(
        self,
        eval_texts: Mapping[str, Iterable[str]] | Iterable[str],
        n: int = 13,
        short_words: int = 8,
        min_overlap: float = 0.5,
    ):
        self.n, self.short_words, self.min_overlap = n, short_words, min_overlap
        self.tasks: list[str] = []  # eval input number -> task
        self.owned: list[int] = []  # eval input number -> how many n-grams it owns
        self.grams: dict[int, int] = {}  # n-gram hash -> eval input number
        self.short: dict[int, dict[int, str]] = defaultdict(dict)  # length -> {hash of whole input: task}
        by_task = eval_texts if isinstance(eval_texts, Mapping) else {"eval": eval_texts}
        for task, texts in by_task.items():
            for text in texts:
                self.add(task, text)

    def add(self, task: str, text: str) -> None:
        tokens = words(text)
        if len(tokens) >= self.n:
            number = len(self.tasks)
            self.tasks.append(task)
            owned = 0
            for gram in set(map(hash, _grams(tokens, self.n))):
                if gram not in self.grams:
                    self.grams[gram] = number
                    owned += 1
            self.owned.append(owned)
        elif len(tokens) >= self.short_words:
            self.short[len(tokens)].setdefault(hash(tuple(tokens)), task)

    def __len__(self) -> int:
        return len(self.tasks) + sum(len(v) for v in self.short.values())

    def match(self, text: str) -> str | None:
        """The task of an evaluation input that `text` contains, or None."""
        tokens = words(text)
        hits: Counter = Counter()
        for gram in set(map(hash, _grams(tokens, self.n))):
            number = self.grams.get(gram)
            if number is not None:
                hits[number] += 1
        for number, count in hits.most_common():
            if count >= self.min_overlap * self.owned[number]:
                return self.tasks[number]
        for length, table in self.short.items():
            for gram in _grams(tokens, length):
                task = table.get(hash(gram))
                if task is not None:
                    return task
        return None


def decontaminate(
    examples: list[dict],
    eval_texts: Mapping[str, Iterable[str]] | Iterable[str] | EvalIndex,
    n: int = 13,
    short_words: int = 8,
    min_overlap: float = 0.5,
) -> tuple[list[dict], dict[str, dict[str, int]]]:
    """Keep examples that contain no evaluation input (`eval_texts`: plain texts, or {task: texts}).

    Returns (kept, removed) with removed = {task: {source: count}}.
    """
    index = eval_texts if isinstance(eval_texts, EvalIndex) else EvalIndex(eval_texts, n, short_words, min_overlap)
    removed: dict[str, Counter] = defaultdict(Counter)
    kept = []
    for ex in examples:
        task = index.match(example_text(ex))
        if task is None:
            kept.append(ex)
        else:
            removed[task][ex["source"]] += 1
    return kept, {task: dict(counts) for task, counts in removed.items()}
