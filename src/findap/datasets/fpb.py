"""Financial PhraseBank (Malo et al. 2014): one `sentence@label` per line, UTF-8.

The label follows the last `@` and is positive, negative or neutral (any case; it comes out lower-cased). A line
gives a `Sentence`: the sentence without surrounding whitespace (the train/eval split hashes it, findap.splits)
and its label. Blank lines carry nothing: readers skip them before parsing.
"""
from __future__ import annotations

from typing import NamedTuple

from findap.datasets import RowError

LABELS = ("positive", "negative", "neutral")


class Sentence(NamedTuple):
    sentence: str
    label: str


def parse_line(line: str) -> Sentence:
    """One `sentence@label` line; RowError names the field that is missing or wrong."""
    sentence, sep, label = line.rpartition("@")
    if not sep:
        raise RowError("label", "expected 'sentence@label'")
    if not sentence.strip():
        raise RowError("sentence", "empty sentence before '@'")
    label = label.strip().lower()
    if label not in LABELS:
        raise RowError("label", f"{label!r} not in {LABELS}")
    return Sentence(sentence.strip(), label)
