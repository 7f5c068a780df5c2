"""Converters for the finance datasets in the shared data folder (formats documented in its README).

Each converter reads one real file format and yields training examples; what a row of a dataset means is
parsed in findap.datasets, which FinEval and distillation read too. Datasets that FinEval also scores skip the
rows reserved for evaluation (ctx.for_training, holdout.py). Instruction wording is ours.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

from findap.curate.sources.badrows import file_text, text_lines
from findap.curate.sources.context import ConvertContext, PromptTemplate
from findap.datasets import RowError
from findap.datasets import cfa as cfa_data, finer as finer_data, fomc as fomc_data, fpb as fpb_data
from findap.datasets import tatqa as tatqa_data
from findap.datasets.finer import entity_spans
from findap.datasets.german_credit import decode_row


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
        try:
            row = fpb_data.parse_line(line)
        except RowError as err:
            ctx.bad.report(path, number, err.field, err.problem)
            continue
        if ctx.for_training("fpb", row.sentence):
            yield ctx.classified(f"{number}", FPB_TEMPLATES, {"sentence": row.sentence}, row.label)


# --- FiNER (CoNLL) -------------------------------------------------------------------------------------------

NER_PROMPT = (
    "Find the named entities in this sentence from an SEC filing. Write one per line as `entity, TYPE` with TYPE "
    "one of PER (person), ORG (organization), LOC (location) or MISC; write `none` if there are none.\n\n"
    "Sentence: {sentence}"
)


def conll_sentences(path: Path, ctx: ConvertContext) -> Iterator[finer_data.Sentence]:
    """(first line number, tokens, IOB tags) per sentence (findap.datasets.finer); a token line that does not
    parse, or names a type the prompt does not list, is a bad row and leaves the sentence without that token."""
    return finer_data.sentences(_read_lines(path, ctx), lambda number, err: ctx.bad.report(
        path, number, err.field, err.problem), types=finer_data.TYPES)


def finer(path: Path, ctx: ConvertContext) -> Iterator[dict]:
    for sentence in conll_sentences(path, ctx):
        if not ctx.for_training("finer", sentence.text):
            continue
        spans = entity_spans(sentence.tokens, sentence.tags)
        answer = "\n".join(f"{text}, {kind}" for text, kind in spans) or "none"
        yield ctx.it(f"{sentence.start}", NER_PROMPT.format(sentence=sentence.text), answer)


# --- FOMC hawkish/dovish (xlsx) ------------------------------------------------------------------------------

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
    for field_name in fomc_data.COLUMNS:
        if field_name not in header:
            ctx.bad.report(path, 1, field_name, f"missing column; header is {header}")
            return
    col = {name: header.index(name) for name in header}
    for number, cells in enumerate(rows, start=2):
        try:
            row = fomc_data.parse_row(cells[col["sentence"]], cells[col["label"]])
        except RowError as err:
            ctx.bad.report(path, number, err.field, err.problem)
            continue
        if ctx.for_training("fomc", row.sentence):
            yield ctx.classified(f"{number}", FOMC_TEMPLATES, {"sentence": row.sentence}, row.label)


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
        except RowError as err:
            ctx.bad.report(path, number, err.field, err.problem)
            continue
        lines = [f"- {name}: {meaning}" for name, meaning in decoded]
        profile = "\n".join(lines)
        if ctx.for_training("credit", line):
            yield ctx.classified(f"{number}", CREDIT_TEMPLATES, {"profile": profile}, label)


# --- TAT-QA (tables + paragraphs + questions) ----------------------------------------------------------------

TATQA_PROMPT = (
    "Use the table and the text from a company report to answer the question. Show the calculation when one is "
    "needed and end with `Answer: <value>`.\n\n{context}\n\nQuestion: {question}"
)  # {context}: the report's table and text under headings, as FinEval's tatqa documents show them


def _tatqa_answer(question: tatqa_data.Question) -> str:
    answer = question.answer
    value = ", ".join(str(a) for a in answer) if isinstance(answer, list) else str(answer)
    if question.scale == "percent":
        value = f"{value}%" if not value.endswith("%") else value
    elif question.scale:
        value = f"{value} {question.scale}"
    derivation = question.derivation.strip()
    return f"{derivation} = {value}\nAnswer: {value}" if derivation else f"Answer: {value}"


def tatqa(path: Path, ctx: ConvertContext) -> Iterator[dict]:
    items = _json_document(path, ctx)
    for index, item in enumerate(items):
        try:
            report = tatqa_data.read_report(item)
        except RowError as err:
            ctx.bad.report(path, f"item {index}", err.field, err.problem)
            continue
        # split by report (table + paragraphs), not by question: questions on one table share its whole context,
        # so a table's questions must all land on the same side of the train/eval split
        # (Report.key_text: FinEval's tatqa task and distillation hash the same report text)
        if not ctx.for_training("tatqa", report.key_text):
            continue
        for raw in report.questions:
            try:
                q = tatqa_data.read_question(raw)
            except RowError as err:
                ctx.bad.report(path, f"item {index}", err.field, err.problem)
                continue
            prompt = TATQA_PROMPT.format(context=report.context, question=q.question)
            yield ctx.it(q.uid, prompt, _tatqa_answer(q))


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
        question = item.get("text")
        if not isinstance(question, str) or not question.strip():
            ctx.bad.report(path, f"item {index}", f"[{index}].text", "missing question text")
            continue
        try:
            answer = cfa_data.answer_letter(item.get("answer"))
        except RowError as err:
            ctx.bad.report(path, f"item {index}", f"[{index}].{err.field}", err.problem)
            continue
        if ctx.for_training("cfa", question):
            yield ctx.it(question, CFA_PROMPT.format(question=question.strip()), f"Answer: {answer}")
