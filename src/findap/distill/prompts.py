"""Reasoning prompts with verifiable answers, read from their original formats.

Every loader returns `ReasoningItem`s: the question as the policy will see it, the gold answer, how answers are
compared (number, choice letter, text), and a reference solution when the source has one (GSM8K's worked answer,
TAT-QA's derivation, the demo exercises' step-by-step solution) for the judges to compare against.

Prompts never come from an evaluation portion: the demo exercises use only their train split (findap.demo), and
CFA, GSM8K and TAT-QA skip the rows FinEval scores (findap.splits.reserved_for_eval with the keys and input texts
curation uses; `eval_holdout` = curate.eval_holdout, 0.3 by default). `limit` counts the kept prompts.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from findap.datasets import RowError, tatqa
from findap.datasets.gsm8k import split_answer
from findap.io import DataError, read_records
from findap.splits import DEFAULT_EVAL_FRACTION, reserved_for_eval


@dataclass(frozen=True)
class ReasoningItem:
    id: str
    question: str
    gold: str
    answer_type: str  # "number" | "choice" | "text"
    source: str
    reference_solution: str | None = None
    domain: str = "finance"


def load_exercises(path: str | None = None, limit: int | None = None) -> list[ReasoningItem]:
    """The demo exercises of the train split only (dev and test are FinEval's demo_exercises task)."""
    from findap.demo import demo_split, load_demo

    rows = demo_split(load_demo("exercises", path=path), "train")[:limit]
    return [
        ReasoningItem(str(r["id"]), r["question"], str(r["answer"]), "number", "exercises", r["solution"])
        for r in rows
    ]


def load_cfa(path: str, limit: int | None = None,
             eval_holdout: float = DEFAULT_EVAL_FRACTION) -> list[ReasoningItem]:
    """CFA-Easy rows `{query, answer, text, choices, gold}`; `text` is 'Q:...,CHOICES: A: ...,B: ...'."""
    rows = read_records(path, required=("text", "answer"))
    items = []
    for i, row in enumerate(rows):
        if reserved_for_eval("cfa", row["text"], eval_holdout):  # FinEval's cfa_easy scores it
            continue
        if limit is not None and len(items) >= limit:
            break
        question = re.sub(r",CHOICES:\s*", "\nChoices:\n", row["text"].removeprefix("Q:"), count=1)
        question = re.sub(r",(?=[A-E]:\s)", "\n", question)
        items.append(ReasoningItem(f"cfa-{i:05d}", question.strip(), str(row["answer"]).strip(), "choice", "cfa"))
    return items


def load_gsm8k(path: str, limit: int | None = None,
               eval_holdout: float = DEFAULT_EVAL_FRACTION) -> list[ReasoningItem]:
    rows = read_records(path, required=("question", "answer"))
    items = []
    for i, row in enumerate(rows):
        if reserved_for_eval("gsm8k", row["question"], eval_holdout):  # FinEval's gsm8k scores it
            continue
        if limit is not None and len(items) >= limit:
            break
        try:
            solution = split_answer(row["answer"])  # worked steps without calculator annotations, final number
        except RowError as err:
            raise DataError(path, i + 1, err.field, err.problem) from None
        items.append(ReasoningItem(f"gsm8k-{i:05d}", row["question"], solution.number, "number", "gsm8k",
                                   solution.steps, "math"))
    return items


def load_tatqa(path: str, limit: int | None = None,
               eval_holdout: float = DEFAULT_EVAL_FRACTION) -> list[ReasoningItem]:
    """TAT-QA questions whose answer is computed (answer_type arithmetic or count): one number, checkable.
    Whole reports FinEval's tatqa task scores are skipped (split by report, as curation does)."""
    docs = json.loads(Path(path).read_text(encoding="utf-8"))
    items: list[ReasoningItem] = []
    for d, doc in enumerate(docs):
        try:
            report = tatqa.read_report(doc)
        except RowError as err:
            raise DataError(path, f"document {d}", err.field, err.problem) from None
        if reserved_for_eval("tatqa", report.key_text, eval_holdout):
            continue
        context = f"{report.table}\n\n{report.text}"  # the table and the text, without headings
        for raw in report.questions:
            if not isinstance(raw, dict) or raw.get("answer_type") not in ("arithmetic", "count"):
                continue
            try:
                q = tatqa.read_question(raw)
            except RowError as err:
                raise DataError(path, f"document {d}", err.field, err.problem) from None
            scale = f" (answer in {q.scale})" if q.scale else ""
            question = f"{context}\n\nQuestion: {q.question}{scale}"
            derivation = f"{q.derivation} = {q.answer}" if q.derivation else None
            items.append(ReasoningItem(f"tatqa-{q.uid}", question, str(q.answer), "number", "tatqa", derivation))
            if limit and len(items) >= limit:
                return items
    return items


def load_jsonl(path: str, question_field: str, answer_field: str, answer_type: str,
               limit: int | None = None) -> list[ReasoningItem]:
    rows = read_records(path, required=(question_field, answer_field), limit=limit)
    stem = Path(path).stem
    return [
        ReasoningItem(str(r.get("id", f"{stem}-{i:05d}")), str(r[question_field]), str(r[answer_field]),
                      answer_type, stem, r.get("solution"))
        for i, r in enumerate(rows)
    ]


def load_source(source, eval_holdout: float = DEFAULT_EVAL_FRACTION) -> list[ReasoningItem]:
    """One `PromptSource` (see config.py) -> items (none from an evaluation portion)."""
    if source.kind == "exercises":
        return load_exercises(source.path, source.limit)
    if source.path is None:
        raise ValueError(f"distill.sources: kind '{source.kind}' needs a path")
    if source.kind == "cfa":
        return load_cfa(source.path, source.limit, eval_holdout)
    if source.kind == "gsm8k":
        return load_gsm8k(source.path, source.limit, eval_holdout)
    if source.kind == "tatqa":
        return load_tatqa(source.path, source.limit, eval_holdout)
    return load_jsonl(source.path, source.question_field, source.answer_field, source.answer_type, source.limit)
