"""GSM8K (Cobbe et al. 2021, `train.jsonl` / `test.jsonl`): one JSON object `{question, answer}` per line.

`answer` is a worked solution whose lines may hold calculator annotations (`<<48/2=24>>`) and whose last line is
`#### <final answer>`. `split_answer` gives a `Solution`: the steps without annotations and the final answer as
written (`number` drops thousands separators). The train/eval split hashes `question`.
"""
from __future__ import annotations

import re
from typing import NamedTuple

from findap.datasets import RowError

_CALCULATOR = re.compile(r"<<[^>]*>>")
_FINAL = re.compile(r"\n?####\s*(.+?)\s*$")


class Solution(NamedTuple):
    steps: str
    final: str

    @property
    def number(self) -> str:
        """The final answer without thousands separators ('1,000' -> '1000')."""
        return self.final.replace(",", "")


def split_answer(answer: str) -> Solution:
    """The worked steps and the final answer of an `answer` field; RowError('answer') without a `#### N` line."""
    final = _FINAL.search(answer)
    if final is None:
        raise RowError("answer", "no final '#### N' line")
    return Solution(_CALCULATOR.sub("", answer[: final.start()]).strip(), final.group(1).strip())
