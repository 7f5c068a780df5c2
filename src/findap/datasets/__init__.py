"""The raw datasets that more than one side of findap reads, each parsed in one module.

Curation turns these records into training examples, FinEval into task documents and distillation into prompts,
so a row means the same thing (the same sentence, table, label or entity spans) to all three. A module parses the
dataset's own format: a line, a CoNLL sentence, a JSON item, an answer field. Generic containers (text lines,
JSONL, a JSON list, an xlsx sheet) are read by each side with its own policy for bad rows: curation skips and
lists them (curate.on_bad_row), FinEval and distillation raise findap.io.DataError. Either way the problem a
module reports is a `RowError` naming the field, which the side turns into its file:line message.

| module        | raw format                                                    |
|---------------|---------------------------------------------------------------|
| fpb           | Financial PhraseBank `sentence@label` lines                   |
| finer         | FiNER CoNLL `token POS chunk TAG` lines, IOB1 tags            |
| fomc          | FOMC hawkish/dovish xlsx cells `sentence`, `label` (0, 1, 2)  |
| german_credit | UCI `german.data` coded attributes                            |
| tatqa         | TAT-QA JSON reports: table, paragraphs, questions             |
| cfa           | CFA exam JSON items: `text` with its choices, `answer` letter  |
| gsm8k         | GSM8K `answer` fields: worked steps, then `#### N`            |
"""
from __future__ import annotations


class RowError(ValueError):
    """A row that does not follow its dataset's format; `field` names the part that is wrong."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


__all__ = ["RowError"]
