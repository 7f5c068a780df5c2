"""FiNER (Alvarado et al. 2015, `FIN5.train.conll`): CoNLL lines `token POS chunk TAG`, one token per line.

A blank line or a `-DOCSTART-` line ends a sentence. TAG is `O` or IOB `B-TYPE` / `I-TYPE`; FiNER writes IOB1
(I- also starts a span, B- only separates two adjacent spans of one type), with types PER, ORG, LOC and MISC. A
sentence comes out as a `Sentence`: the line it starts on, its tokens and their tags as written; `entity_spans`
reads either IOB scheme into (entity text, TYPE) spans, `iob2` rewrites tags so every span starts with B-.
"""
from __future__ import annotations

import re
from typing import Callable, Iterable, Iterator, NamedTuple

from findap.datasets import RowError

TYPES = {"PER": "person", "ORG": "organization", "LOC": "location", "MISC": "miscellaneous"}
_IOB_TAG = re.compile(r"[BI]-\w+")


class Sentence(NamedTuple):
    start: int  # the line number of its first token
    tokens: list[str]
    tags: list[str]

    @property
    def text(self) -> str:
        """The tokens joined by single spaces: what a prompt shows and what the train/eval split hashes."""
        return " ".join(self.tokens)


def parse_token(line: str, types: Iterable[str] | None = None) -> tuple[str, str]:
    """(token, tag) of one token line; `types`: the entity types allowed (None: any IOB type)."""
    columns = line.split()
    if len(columns) < 2:
        raise RowError("tag", "expected 'token ... TAG' columns")
    tag = columns[-1]
    if tag != "O" and not _IOB_TAG.fullmatch(tag):
        raise RowError("tag", f"{tag!r} is not an IOB tag")
    if tag != "O" and types is not None and tag[2:] not in types:
        raise RowError("tag", f"unknown entity type in {tag!r}; known: {sorted(types)}")
    return columns[0], tag


def sentences(lines: Iterable[tuple[int, str]], bad: Callable[[int, RowError], None],
              types: Iterable[str] | None = None) -> Iterator[Sentence]:
    """The sentences of numbered lines. A malformed token line goes to `bad(line, error)`: raise there to stop,
    or return to drop that token and go on with the sentence."""
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    for number, line in lines:
        if not line.strip() or line.startswith("-DOCSTART-"):
            if tokens:
                yield Sentence(start, tokens, tags)
            tokens, tags = [], []
            continue
        try:
            token, tag = parse_token(line, types)
        except RowError as err:
            bad(number, err)
            continue
        if not tokens:
            start = number
        tokens.append(token)
        tags.append(tag)
    if tokens:
        yield Sentence(start, tokens, tags)


def iob2(tags: list[str]) -> list[str]:
    """IOB1 -> IOB2: an I- tag after O or after another type starts a span, so it becomes B-."""
    out, prev = [], "O"
    for tag in tags:
        if tag.startswith("I-") and (prev == "O" or prev[2:] != tag[2:]):
            tag = "B-" + tag[2:]
        out.append(tag)
        prev = tag
    return out


def entity_spans(tokens: list[str], tags: list[str]) -> list[tuple[str, str]]:
    """(entity text, TYPE) spans in sentence order, from IOB1 or IOB2 tags: a span starts at B-, at a change of
    type or after O, and ends at O."""
    spans: list[tuple[str, str]] = []
    current: list[str] = []
    current_type: str | None = None
    for token, tag in zip(tokens, tags):
        kind = tag[2:] if tag != "O" else None
        if current and (kind is None or tag.startswith("B-") or kind != current_type):
            spans.append((" ".join(current), current_type))
            current, current_type = [], None
        if kind is not None:
            current.append(token)
            current_type = kind
    if current:
        spans.append((" ".join(current), current_type))
    return spans
