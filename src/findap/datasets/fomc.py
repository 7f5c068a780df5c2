"""FOMC hawkish-dovish (Shah et al. 2023, `lab-manual-split-combine-train-5768.xlsx`): one sheet whose header
row names the columns; `sentence` holds a sentence from a Federal Reserve communication, `label` its stance code.

Codes: 0 dovish, 1 hawkish, 2 neutral. `parse_row` turns the two cells into a `Sentence` (text without surrounding
whitespace, the train/eval split hashes it; stance code and name).
"""
from __future__ import annotations

from typing import NamedTuple

from findap.datasets import RowError

LABELS = ("dovish", "hawkish", "neutral")  # by code
COLUMNS = ("sentence", "label")


class Sentence(NamedTuple):
    sentence: str
    code: int

    @property
    def label(self) -> str:
        return LABELS[self.code]


def parse_row(sentence: object, label: object) -> Sentence:
    """The `sentence` and `label` cells of one sheet row (the code as a number or its digits)."""
    if not isinstance(sentence, str) or not sentence.strip():
        raise RowError("sentence", "empty")
    code = str(label).strip().removesuffix(".0") if label is not None and not isinstance(label, bool) else ""
    if code not in ("0", "1", "2"):
        raise RowError("label", f"{label!r} is not 0, 1 or 2")
    return Sentence(sentence.strip(), int(code))
