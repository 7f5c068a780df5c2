"""TAT-QA (Zhu et al. 2021, `tatqa_dataset_*.json`): a JSON list of reports, each one table from a company report
with its paragraphs and the questions asked about them.

An item is `{table: {uid, table: [[cell, ...], ...]}, paragraphs: [{uid, order, text}], questions: [{uid, order,
question, answer, derivation, answer_type, answer_from, rel_paragraphs, req_comparison, scale}]}`; `answer` is a
string, a number or a list of spans, `scale` is '', thousand, million, billion or percent. `read_report` gives a
`Report`: the table as `cell | cell` lines, the paragraphs' text in `order`, one per line, and the questions;
`read_question` one `Question`. Every question of a report shares its context, so the train/eval split hashes
the report (`Report.key_text`), not the question.
"""
from __future__ import annotations

from typing import NamedTuple

from findap.datasets import RowError


class Question(NamedTuple):
    uid: str  # the question text when the item has no uid
    question: str
    answer: object  # str, number or list of spans, as in the file
    answer_type: str | None  # span, multi-span, arithmetic or count
    scale: str
    derivation: str  # the calculation for arithmetic answers, '' when there is none


class Report(NamedTuple):
    table: str
    text: str
    questions: list[dict]  # as in the file; read each with read_question

    @property
    def key_text(self) -> str:
        """What the train/eval split hashes (findap.splits): the table, then the text."""
        return f"{self.table}\n{self.text}"

    @property
    def context(self) -> str:
        """The table and the text under headings, as a training prompt and a FinEval document show them."""
        return f"Table:\n{self.table}\n\nText:\n{self.text}"


def render_table(rows: list[list]) -> str:
    """One line per table row, cells without surrounding whitespace joined by ' | '."""
    return "\n".join(" | ".join(str(cell).strip() for cell in row) for row in rows)


def read_report(item: object) -> Report:
    """One item of the JSON list; RowError names the field that is missing or malformed."""
    for name in ("table", "paragraphs", "questions"):
        if not isinstance(item, dict) or name not in item:
            raise RowError(name, "missing")
    try:
        table = render_table(item["table"]["table"])
    except (KeyError, TypeError) as err:
        raise RowError("table", f"expected {{'table': [[cell, ...], ...]}} ({type(err).__name__}: {err})") from None
    try:
        paragraphs = sorted(item["paragraphs"], key=lambda p: p.get("order", 0))
        text = "\n".join(p["text"] for p in paragraphs)
    except (KeyError, TypeError, AttributeError) as err:
        raise RowError("paragraphs", f"expected a list of {{order, text}} ({type(err).__name__}: {err})") from None
    if not isinstance(item["questions"], list):
        raise RowError("questions", "expected a list")
    return Report(table, text, item["questions"])


def read_question(question: object) -> Question:
    """One entry of a report's `questions`; it needs at least `question` and `answer`."""
    for name in ("question", "answer"):
        if not isinstance(question, dict) or name not in question:
            raise RowError(f"questions.{name}", "missing")
    return Question(question.get("uid", question["question"]), question["question"], question["answer"],
                    question.get("answer_type"), question.get("scale") or "", question.get("derivation") or "")


def report_text(item: dict) -> str:
    """The train/eval split's hash key of one JSON item (Report.key_text)."""
    return read_report(item).key_text
