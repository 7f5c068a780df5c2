"""Converters for the finance datasets in the shared data folder (formats documented in its README).

Each converter reads one real file format and yields training examples. Datasets that FinEval also scores skip
the rows reserved for evaluation (ctx.for_training, holdout.py). Instruction wording is ours.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from findap.curate.sources.badrows import file_text, text_lines
from findap.curate.sources.context import ConvertContext, PromptTemplate
from findap.german_credit import CreditRowError, decode_row
from findap.splits import tatqa_report_text


def _read_lines(path: Path, ctx: ConvertContext) -> Iterator[tuple[int, str]]:
    return text_lines(path, ctx.bad)  # a line that is not UTF-8 is a bad row (on_bad_row)


# --- ECTSum: earnings-call transcripts (CPT) and their bullet summaries (IT) ---------------------------------

SUMMARY_PROMPT = (
    "Below is an earnings call transcript. Summarise the company's key reported figures and guidance as a few "
    "short lines, one fact per line.\n\nTranscript:\n{transcript}"
)


def _ectsum_pairs(root: Path, ctx: ConvertContext) -> Iterator[tuple[Path, str, Path]]:
    ects = root / "ects" if (root / "ects").is_dir() else root
    for transcript in sorted(ects.glob("*.txt")):
        text = file_text(transcript, ctx.bad, "transcript")
        if text is None:
            continue
        text = text.strip()
        if not text:
            ctx.bad.report(transcript, 1, "transcript", "empty file")
            continue
        if ctx.for_training("ectsum", text):
            yield transcript, text, root / "gt_summaries" / transcript.name


def ectsum_transcripts(root: Path, ctx: ConvertContext) -> Iterator[dict]:
    for transcript, text, _ in _ectsum_pairs(root, ctx):
        yield ctx.cpt(transcript.stem, text)


def ectsum_summaries(root: Path, ctx: ConvertContext) -> Iterator[dict]:
    for transcript, text, summary_path in _ectsum_pairs(root, ctx):
        if not summary_path.exists():
            ctx.bad.report(summary_path, 0, "summary", "missing summary for transcript")
            continue
        summary = file_text(summary_path, ctx.bad, "summary")
        if summary is None:
            continue
        summary = summary.strip()
        if not summary:
            ctx.bad.report(summary_path, 1, "summary", "empty summary")
            continue
        yield ctx.it(transcript.stem, SUMMARY_PROMPT.format(transcript=text), summary)


# --- Financial PhraseBank: `sentence@label` ------------------------------------------------------------------

FPB_LABELS = ("positive", "negative", "neutral")
FPB_PROMPT = (
    "How would an investor read the following sentence from financial news: positive, negative or neutral "
    "for the company concerned? Reply with just that one word.\n\nSentence: {sentence}"
)
# curate.prompt_templates: the instruction above, then other wordings and orders, and the bare completion form
# a plain log-likelihood prompt resembles; every one holds the sentence verbatim (decontamination matches it)
FPB_TEMPLATES = (
    PromptTemplate("instruction", FPB_PROMPT),
    PromptTemplate("question_after", "{sentence}\n\nFor the company this news is about, is it positive, negative or "
                   "neutral? Give only the label."),
    PromptTemplate("options", "Sentiment labels: positive | negative | neutral\nNews sentence: {sentence}\n"
                   "Which label fits, seen by an investor in the company?"),
    PromptTemplate("plain", "Sentence: {sentence}\nSentiment:"),
)


def fpb(path: Path, ctx: ConvertContext) -> Iterator[dict]:
    for number, line in _read_lines(path, ctx):
        if not line.strip():
            continue
        sentence, sep, label = line.rpartition("@")
        if not sep or not sentence.strip():
            ctx.bad.report(path, number, "sentence", "expected 'sentence@label'")
            continue
        label = label.strip().lower()
        if label not in FPB_LABELS:
            ctx.bad.report(path, number, "label", f"{label!r} not in {FPB_LABELS}")
            continue
        if ctx.for_training("fpb", sentence):
            yield ctx.classified(f"{number}", FPB_TEMPLATES, {"sentence": sentence.strip()}, label)


# --- FiNER (CoNLL) -------------------------------------------------------------------------------------------

NER_TYPES = {"PER": "person", "ORG": "organization", "LOC": "location", "MISC": "miscellaneous"}
NER_PROMPT = (
    "Find the named entities in this sentence from an SEC filing. Write one per line as `entity, TYPE` with TYPE "
    "one of PER (person), ORG (organization), LOC (location) or MISC; write `none` if there are none.\n\n"
    "Sentence: {sentence}"
)


def conll_sentences(path: Path, ctx: ConvertContext) -> Iterator[tuple[int, list[str], list[str]]]:
    """(first line number, tokens, IOB tags) per sentence; `-DOCSTART-` lines and blank lines separate."""
    tokens: list[str] = []
    tags: list[str] = []
    start = 0
    for number, line in _read_lines(path, ctx):
        if not line.strip() or line.startswith("-DOCSTART-"):
            if tokens:
                yield start, tokens, tags
            tokens, tags = [], []
            continue
        parts = line.split()
        if len(parts) < 2:
            ctx.bad.report(path, number, "tag", "expected 'token POS - TAG'")
            continue
        tag = parts[-1]
        if tag != "O" and (tag[:2] not in ("B-", "I-") or tag[2:] not in NER_TYPES):
            ctx.bad.report(path, number, "tag", f"unknown IOB tag {tag!r}")
            continue
        if not tokens:
            start = number
        tokens.append(parts[0])
        tags.append(tag)
    if tokens:
        yield start, tokens, tags


def entity_spans(tokens: list[str], tags: list[str]) -> list[tuple[str, str]]:
    """(entity text, TYPE) spans; handles IOB1 (FiNER uses I- at span starts) and IOB2."""
    spans: list[tuple[str, str]] = []
    current: list[str] = []
    current_type = None
    for token, tag in zip(tokens, tags):
        kind = tag[2:] if tag != "O" else None
        starts_new = tag.startswith("B-") or kind != current_type
        if current and (kind is None or starts_new):
            spans.append((" ".join(current), current_type))
            current, current_type = [], None
        if kind is not None:
            current.append(token)
            current_type = kind
    if current:
        spans.append((" ".join(current), current_type))
    return spans


def finer(path: Path, ctx: ConvertContext) -> Iterator[dict]:
    for start, tokens, tags in conll_sentences(path, ctx):
        sentence = " ".join(tokens)
        if not ctx.for_training("finer", sentence):
            continue
        spans = entity_spans(tokens, tags)
        answer = "\n".join(f"{text}, {kind}" for text, kind in spans) or "none"
        yield ctx.it(f"{start}", NER_PROMPT.format(sentence=sentence), answer)


# --- FOMC hawkish/dovish (xlsx) ------------------------------------------------------------------------------

FOMC_LABELS = {0: "dovish", 1: "hawkish", 2: "neutral"}
FOMC_PROMPT = (
    "Does this sentence from a Federal Reserve (FOMC) communication point towards tighter monetary policy "
    "(hawkish), looser policy (dovish), or neither (neutral)? Answer with one word.\n\nSentence: {sentence}"
)
FOMC_TEMPLATES = (
    PromptTemplate("instruction", FOMC_PROMPT),
    PromptTemplate("question_after", "{sentence}\n\nRead as a hint about interest rates, does this Federal Reserve "
                   "sentence lean hawkish, dovish or neutral? One word."),
    PromptTemplate("options", "Policy stance labels: hawkish (tighter), dovish (looser), neutral (neither)\n"
                   "FOMC text: {sentence}\nWhich label fits the text?"),
    PromptTemplate("plain", "FOMC sentence: {sentence}\nStance:"),
)


def fomc(path: Path, ctx: ConvertContext) -> Iterator[dict]:
    import openpyxl  # only this converter needs it

    sheet = openpyxl.load_workbook(path, read_only=True).active
    rows = sheet.iter_rows(values_only=True)
    header = [str(h) for h in next(rows)]
    for field_name in ("sentence", "label"):
        if field_name not in header:
            ctx.bad.report(path, 1, field_name, f"missing column; header is {header}")
            return
    col = {name: header.index(name) for name in header}
    for number, row in enumerate(rows, start=2):
        sentence, label = row[col["sentence"]], row[col["label"]]
        if not isinstance(sentence, str) or not sentence.strip():
            ctx.bad.report(path, number, "sentence", "empty")
            continue
        if label not in FOMC_LABELS:
            ctx.bad.report(path, number, "label", f"{label!r} not in {sorted(FOMC_LABELS)}")
            continue
        if ctx.for_training("fomc", sentence):
            yield ctx.classified(f"{number}", FOMC_TEMPLATES, {"sentence": sentence.strip()}, FOMC_LABELS[label])


# --- German credit (UCI, coded attributes) -------------------------------------------------------------------

CREDIT_PROMPT = (
    "A bank must decide on a loan application. From the applicant profile below, is the credit risk good or "
    "bad? Answer with one word.\n\n{profile}"
)
CREDIT_TEMPLATES = (
    PromptTemplate("instruction", CREDIT_PROMPT),
    PromptTemplate("question_after", "{profile}\n\nWould you rate the borrower described above as a good or a bad "
                   "credit risk? Reply good or bad."),
    PromptTemplate("options", "Credit ratings: good | bad\nLoan applicant:\n{profile}\n"
                   "Which rating fits this applicant?"),
    PromptTemplate("plain", "Applicant profile:\n{profile}\nCredit risk:"),
)


def credit(path: Path, ctx: ConvertContext) -> Iterator[dict]:
    for number, line in _read_lines(path, ctx):
        values = line.split()
        if not values:
            continue
        try:
            decoded, label = decode_row(values)
        except CreditRowError as err:
            ctx.bad.report(path, number, err.field, err.problem)
            continue
        lines = [f"- {name}: {meaning}" for name, meaning in decoded]
        profile = "\n".join(lines)
        if ctx.for_training("credit", line):
            yield ctx.classified(f"{number}", CREDIT_TEMPLATES, {"profile": profile}, label)


# --- TAT-QA (tables + paragraphs + questions) ----------------------------------------------------------------

TATQA_PROMPT = (
    "Use the table and the text from a company report to answer the question. Show the calculation when one is "
    "needed and end with `Answer: <value>`.\n\nTable:\n{table}\n\nText:\n{text}\n\nQuestion: {question}"
)


def _render_table(rows: list[list[str]]) -> str:
    return "\n".join(" | ".join(str(cell).strip() for cell in row) for row in rows)


def _tatqa_answer(question: dict) -> str:
    answer = question["answer"]
    value = ", ".join(str(a) for a in answer) if isinstance(answer, list) else str(answer)
    scale = question.get("scale") or ""
    if scale == "percent":
        value = f"{value}%" if not value.endswith("%") else value
    elif scale:
        value = f"{value} {scale}"
    derivation = (question.get("derivation") or "").strip()
    return f"{derivation} = {value}\nAnswer: {value}" if derivation else f"Answer: {value}"


def tatqa(path: Path, ctx: ConvertContext) -> Iterator[dict]:
    items = _json_document(path, ctx)
    for index, item in enumerate(items):
        try:
            table = _render_table(item["table"]["table"])
            text = "\n".join(p["text"] for p in sorted(item["paragraphs"], key=lambda p: p.get("order", 0)))
            questions = item["questions"]
        except (KeyError, TypeError) as e:
            ctx.bad.report(path, f"item {index}", f"[{index}]", f"missing {e}")
            continue
        # split by report (table + paragraphs), not by question: questions on one table share its whole context,
        # so a table's questions must all land on the same side of the train/eval split
        # (findap.splits.tatqa_report_text: FinEval's tatqa task and distillation hash the same report text)
        if not ctx.for_training("tatqa", tatqa_report_text(item)):
            continue
        for q in questions:
            if "question" not in q or "answer" not in q:
                ctx.bad.report(path, f"item {index}", f"[{index}].questions", "question without 'question'/'answer'")
                continue
            prompt = TATQA_PROMPT.format(table=table, text=text, question=q["question"])
            yield ctx.it(q.get("uid", q["question"]), prompt, _tatqa_answer(q))


def _json_document(path: Path, ctx: ConvertContext) -> list:
    """The items of a JSON list file; a file that is not UTF-8, not JSON or not a list is one bad row (reported,
    then skipped or fatal as `on_bad_row` says) and yields no items."""
    text = file_text(path, ctx.bad, "json")
    if text is None:
        return []
    try:
        items = json.loads(text)
    except json.JSONDecodeError as e:
        ctx.bad.report(path, e.lineno, "json", e.msg)
        return []
    if not isinstance(items, list):
        ctx.bad.report(path, 1, "json", f"expected a JSON list of items, got {type(items).__name__}")
        return []
    return items


# --- CFA-Easy (multiple-choice exam questions -> exercises) --------------------------------------------------

CFA_PROMPT = (
    "Work through this CFA exam practice question, then give the letter of the best option on the last line "
    "as `Answer: <letter>`.\n\n{question}"
)


def cfa(path: Path, ctx: ConvertContext) -> Iterator[dict]:
    for index, item in enumerate(_json_document(path, ctx)):
        if not isinstance(item, dict):
            ctx.bad.report(path, f"item {index}", f"[{index}]", f"expected an object, got {type(item).__name__}")
            continue
        question, answer = item.get("text"), item.get("answer")
        answer = answer.strip().upper() if isinstance(answer, str) else answer  # a few rows use lower case
        if not isinstance(question, str) or not question.strip():
            ctx.bad.report(path, f"item {index}", f"[{index}].text", "missing question text")
            continue
        if answer not in ("A", "B", "C", "D"):
            ctx.bad.report(path, f"item {index}", f"[{index}].answer", f"{answer!r} is not an option letter")
            continue
        if ctx.for_training("cfa", question):
            yield ctx.it(question, CFA_PROMPT.format(question=question.strip()), f"Answer: {answer}")
