"""CFA exam questions in FinBen's layout (`CFA_Easy.json`): a JSON list of `{query, answer, text, choices, gold}`.

`text` holds the question and its options in one string, `Q:<question>,CHOICES: A: <option>,B: <option>,...`;
`answer` is the letter of the right option (a few rows write it in lower case), `gold` its 0-based index.
`parse_text` splits `text` into a `Question` (question without the `Q:` prefix, options in letter order);
`answer_letter` reads `answer`. The train/eval split hashes the whole `text`.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from findap.datasets import RowError

LETTERS = "ABCDEF"
_CHOICE = re.compile(r"(?:^|,)\s*([A-F]):\s*(.*?)(?=,\s*[A-F]:\s|$)", re.S)


class Question(NamedTuple):
    question: str
    choices: list[str]


def parse_text(text: str) -> Question:
    """The question and its options from an item's `text`; RowError('text') when they cannot be read."""
    stem, sep, options = text.partition("CHOICES:")
    if not sep:
        raise RowError("text", "no 'CHOICES:' section")
    found = _CHOICE.findall(options.strip())
    if not found or [letter for letter, _ in found] != list(LETTERS[: len(found)]):
        raise RowError("text", f"could not read options A, B, C... from {options[:80]!r}")
    question = re.sub(r"^Q:\s*", "", stem.strip()).rstrip(",").strip()
    return Question(question, [option.strip() for _, option in found])


def answer_letter(value: object, options: str = "ABCD") -> str:
    """An item's `answer` as an upper-case option letter."""
    letter = value.strip().upper() if isinstance(value, str) else value
    if letter not in tuple(options):
        raise RowError("answer", f"{letter!r} is not an option letter")
    return letter
