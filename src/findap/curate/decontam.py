"""Decontamination: drop training examples that contain (most of) an evaluation input.

An evaluation *item* (one scored doc) is seen in several ways, its *probes*: for multiple choice the question alone
and the question with its options, for classification the input text, for numeric QA the context alone and
question + context (the question alone only when it needs no context), for chat tasks every turn and all turns
(eval_texts.doc_probes; the full input comes first, the parts after it). A training
example that copies any one of them is contaminated: checking only question+options joined let a copied MMLU
question without its options through (the question owned too few of the joined 13-grams).

Rules, by the probe's length in words (`words`: lower-cased \\w+ runs, so punctuation and layout do not matter):

- n (13) words or more: word 13-grams as in GPT-3 and FineWeb. A training example is contaminated by a probe when
  it contains at least `min_overlap` of the probe's *distinctive* 13-grams. Any-single-13-gram matching is wrong
  for long inputs: earnings calls repeat sentences quarter after quarter (and share safe-harbor paragraphs), so
  one shared sentence would remove a third of all ECTSum transcripts that merely resemble an eval transcript.
- template text: a 13-gram found in more than `template_items` distinct eval items is template (a form's field
  names, a benchmark's instruction, safe-harbor boilerplate), not evidence of a copy, and is ignored. A probe
  made mostly of template (at least `template_share` of its 13-grams) is a templated record such as a German
  credit row ("checking account: below 0 DM; duration in months: 48; ..."): its few distinctive 13-grams are
  value combinations that training rows of the same form share by chance (measured: 11-19 of 703 training rows
  held half of some eval row's distinctive 13-grams), so a templated probe counts only when it appears whole.
- `short_words` (8) to n-1 words, a full input (an FPB sentence): it must appear whole, as a contiguous word
  sequence.
- `tiny_words` (4) to n-1 words for a part (a short question such as "Which of the following statements is most
  accurate?"), 4 to `short_words`-1 words for a full input: such phrases open many unrelated texts, so they
  count only when they make up a whole line of the training text, after an optional leading label
  ("Question:", "Q:", "Sentence:").
- fewer than `tiny_words` words: not checked (too generic to call a match a copy).

N-grams are stored as Python hashes (one int instead of a 13-tuple; collisions are negligible at 64 bits).
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict
from typing import Iterable, Mapping, Sequence


_WORD = re.compile(r"\w+")
_LINE_LABEL = re.compile(r"^\s*[A-Za-z][A-Za-z ]{0,19}:")  # "Question:", "Q:", "Input sentence:"

EvalItem = str | Sequence[str]  # one probe, or the probes of one eval item (question alone, question+options, ...)


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def _grams(tokens: Sequence[str], n: int) -> Iterable[tuple[str, ...]]:
    return (tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _line_keys(text: str) -> set[int]:
    """Hashes of every line's words, with and without a leading label: what tiny probes are compared with."""
    keys = set()
    for line in text.splitlines():
        tokens = words(line)
        if not tokens:
            continue
        keys.add(hash(tuple(tokens)))
        label = _LINE_LABEL.match(line)
        if label:
            keys.add(hash(tuple(words(line[label.end() :]))))
    return keys


class EvalIndex:
    """Probes of evaluation items -> the task they come from (see the module docstring for the rules)."""

    def __init__(
        self,
        eval_texts: Mapping[str, Iterable[EvalItem]] | Iterable[EvalItem],
        n: int = 13,
        short_words: int = 8,
        min_overlap: float = 0.5,
        tiny_words: int = 4,
        template_items: int = 10,
        template_share: float = 0.25,
    ):
        self.n, self.short_words, self.min_overlap, self.tiny_words = n, short_words, min_overlap, tiny_words
        self.template_items, self.template_share = template_items, template_share
        self.tasks: list[str] = []  # n-gram probe number -> task
        self.needed: list[float] = []  # n-gram probe number -> hits needed (min_overlap * distinctive 13-grams)
        self.grams: dict[int, int | tuple[int, ...]] = {}  # distinctive 13-gram hash -> probe number(s)
        # probes matched whole (short inputs, templated records), by the hash of their first `short_words` words:
        # one pass over a training text's windows finds the candidates, whatever their lengths
        self.whole: dict[int, list[tuple[int, int, str]]] = defaultdict(list)  # anchor -> [(length, hash, task)]
        self.lines: dict[int, str] = {}  # hash of a probe's words -> task, for probes matched as a whole line
        self.template_grams = 0  # distinct 13-grams ignored as template text
        self.templated_probes = 0  # long probes matched whole because they are mostly template
        by_task = eval_texts if isinstance(eval_texts, Mapping) else {"eval": eval_texts}
        self._build(by_task)

    # ---- building ---------------------------------------------------------------------------------------
    def _build(self, by_task: Mapping[str, Iterable[EvalItem]]) -> None:
        items = self._tokenised_items(by_task)
        item_frequency: Counter = Counter()  # 13-gram hash -> number of distinct eval items holding it
        for _, probes in items:
            item_frequency.update({g for tokens in probes for g in map(hash, _grams(tokens, self.n))})
        template = {g for g, count in item_frequency.items() if count > self.template_items}
        self.template_grams = len(template)
        seen: set[tuple[str, ...]] = set()
        for task, probes in items:
            for number, tokens in enumerate(probes):
                if tokens not in seen:  # the same probe in two items or tasks: the first one names the task
                    seen.add(tokens)
                    self._add(task, tokens, template, part=number > 0)

    @staticmethod
    def _tokenised_items(by_task: Mapping[str, Iterable[EvalItem]]) -> list[tuple[str, list[tuple[str, ...]]]]:
        """[(task, probes as word tuples: the full input first, then the parts)], identical items once."""
        out, seen = [], set()
        for task, texts in by_task.items():
            for item in texts:
                probes = [item] if isinstance(item, str) else list(item)
                tokenised = tuple(dict.fromkeys(t for t in (tuple(words(p)) for p in probes) if t))
                if tokenised and tokenised not in seen:
                    seen.add(tokenised)
                    out.append((task, list(tokenised)))
        return out

    def _add(self, task: str, tokens: tuple[str, ...], template: set[int], part: bool) -> None:
        if len(tokens) < self.tiny_words:
            return
        if len(tokens) < self.n:
            if part or len(tokens) < self.short_words:
                self.lines.setdefault(hash(tokens), task)
            else:
                self._add_whole(task, tokens)
            return
        all_grams = set(map(hash, _grams(tokens, self.n)))
        distinctive = all_grams - template
        if len(distinctive) <= (1 - self.template_share) * len(all_grams):
            # a templated record: only a whole copy is evidence (anchored on its first 13-gram)
            self.templated_probes += 1
            self._add_whole(task, tokens)
            return
        number = len(self.tasks)
        self.tasks.append(task)
        self.needed.append(self.min_overlap * len(distinctive))
        for gram in distinctive:
            owners = self.grams.get(gram)
            self.grams[gram] = number if owners is None else (
                (*owners, number) if isinstance(owners, tuple) else (owners, number))

    def _add_whole(self, task: str, tokens: tuple[str, ...]) -> None:
        self.whole[hash(tokens[: self.short_words])].append((len(tokens), hash(tokens), task))

    def __len__(self) -> int:
        """How many probes are checked."""
        return len(self.tasks) + sum(map(len, self.whole.values())) + len(self.lines)

    # ---- matching ---------------------------------------------------------------------------------------
    def match(self, text: str) -> str | None:
        """The task of an evaluation probe that `text` contains, or None."""
        tokens = words(text)
        gram_hashes = [hash(g) for g in _grams(tokens, self.n)]  # hashed once
        return self._match_grams(gram_hashes) or self._match_whole(tokens) or self._match_line(text)

    def _match_grams(self, gram_hashes: list[int]) -> str | None:
        hits: Counter = Counter()
        for gram in set(gram_hashes):
            owners = self.grams.get(gram)
            if owners is None:
                continue
            if isinstance(owners, tuple):
                hits.update(owners)
            else:
                hits[owners] += 1
        for number, count in hits.most_common():
            if count >= self.needed[number]:
                return self.tasks[number]
        return None

    def _match_whole(self, tokens: list[str]) -> str | None:
        if not self.whole:
            return None
        for start, anchor in enumerate(_grams(tokens, self.short_words)):
            for length, full, task in self.whole.get(hash(anchor), ()):
                if start + length <= len(tokens) and hash(tuple(tokens[start : start + length])) == full:
                    return task
        return None

    def _match_line(self, text: str) -> str | None:
        if not self.lines:
            return None
        for key in _line_keys(text):
            task = self.lines.get(key)
            if task is not None:
                return task
        return None


