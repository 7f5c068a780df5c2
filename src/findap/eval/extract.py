"""Answer extraction: raw model output -> a prediction the metrics can score.

Every extractor is `fn(output: str, doc: dict, spec: TaskSpec) -> prediction` (JSON-serialisable; None when
nothing usable was found, which metrics count as `missing` and as wrong). Direct and CoT outputs go through
the same code. What a reply states (its final answer, label, letter, number) is read by `findap.eval.answers`,
shared with distillation's answer check; this module binds those readers to tasks and adds the task-shaped
ones (TAT-QA spans and scale, NER tags).
"""
from __future__ import annotations

import re

from findap.eval.answers import (
    answer_tail,
    final_answer,
    number_in_statement,
    numbers_in,
    stated_label,
    stated_letter,
    stated_number,
)
from findap.eval.registry import register_extractor

__all__ = ["final_answer", "match_label", "letter_index", "extract_label", "extract_letter", "extract_number",
           "extract_tatqa", "extract_text", "extract_raw", "entities_to_tags", "extractor_name"]


def match_label(text: str, labels: list[str], synonyms: dict[str, list[str]]) -> str | None:
    """The label `text` states (see `findap.eval.answers.stated_label`): the one it opens with, else the first
    non-negated mention; synonyms count as their label."""
    return stated_label(text, labels, synonyms)


@register_extractor("label")
def extract_label(output: str, doc: dict, spec) -> str | None:
    """Classification: the label the final answer states; FinBen-style, a reply whose final answer names no
    label falls back to the first (non-negated) label mentioned anywhere in it."""
    answer = final_answer(output)
    return match_label(answer, spec.labels, spec.synonyms) or (
        match_label(output, spec.labels, spec.synonyms) if answer != output.strip() else None
    )


def letter_index(output: str, n_choices: int) -> int | None:
    """The option index a reply states (see `findap.eval.answers.stated_letter`), or None."""
    return stated_letter(output, n_choices)


def _option_named(text: str, choices: list[str]) -> int | None:
    """The option whose own text the answer quotes, when exactly one option's text appears."""
    low = text.lower()
    hits = [i for i, c in enumerate(choices) if c.strip() and c.strip().lower() in low]
    return hits[0] if len(hits) == 1 else None


@register_extractor("letter")
def extract_letter(output: str, doc: dict, spec) -> int | None:
    """Multiple choice answered in text: the letter the final answer states, else the option text it quotes,
    else a letter stated anywhere in the reply (a final answer with neither falls back to the reasoning)."""
    n = len(doc["choices"])
    idx = letter_index(output, n)
    if idx is None:
        idx = _option_named(final_answer(output), doc["choices"])
    if idx is None and answer_tail(output) is not None:
        # the marker line named neither a letter nor an option text: read the reply as if it had no marker
        idx = letter_index(re.sub(r"(?i)answer|selection", "reply", output), n)
    return idx


@register_extractor("number")
def extract_number(output: str, doc: dict, spec) -> str | None:
    """A single number as its cleaned text ('-1234', '1250.50'): `#### N` (GSM8K style) wins, else the number
    right after the last answer marker, else the one the concluding sentence states (see
    `findap.eval.answers.stated_number`)."""
    number = stated_number(output)
    return number.text if number is not None else None


_SCALES = ("thousand", "million", "billion", "percent")
_SCALE_AFTER = re.compile(rf"^\s*(?:({'|'.join(_SCALES[:3])})s?\b|(%|percent\b))", re.I)
# Where a stated answer ends and its explanation begins: a parenthetical that is not a number ('(123)' is one),
# a new sentence, or 'because' / 'since' / ', which' ...
_EXPLANATION = re.compile(r"\s+\((?![\s$€£\d.,%-]+\))|(?<!\d)\.\s+\S|\s+[-–—]\s+|,?\s+(?:because|since|as|which|"
                          r"computed|calculated|derived|based|from|up|down|compared)\b", re.I)


def _answer_statement(output: str) -> str:
    """The TAT-QA answer as stated, without the explanation that may follow it: the first line after the answer
    marker; without a marker, the reply's first line, or its last line holding a number when the first holds
    none (a short reasoning that concludes on its last line)."""
    tail = answer_tail(output)
    lines = [ln.strip().strip("*").strip() for ln in (tail if tail is not None else output).splitlines()]
    lines = [ln for ln in lines if ln]
    if not lines:
        return ""
    line = lines[0]
    if tail is None and not numbers_in(line):
        line = next((ln for ln in reversed(lines) if numbers_in(ln)), line)
    cut = _EXPLANATION.search(line)
    return (line[: cut.start()] if cut else line).strip().rstrip(".").strip()


def _number_span(statement: str, number) -> tuple[str, str]:
    """(span, scale) for one stated number: the scale word or '%' right after it."""
    after = _SCALE_AFTER.match(statement[number.end:])
    scale = ""
    if number.percent:
        scale = "percent"
    elif after:
        scale = "percent" if after.group(2) else after.group(1).lower()
    return number.text + ("%" if scale == "percent" else ""), scale


@register_extractor("tatqa")
def extract_tatqa(output: str, doc: dict, spec) -> dict:
    """TAT-QA style: answer spans (split on ';' or '|') and the scale word they carry, from the answer as
    stated. One number stated at the start, or by a sentence ('The change is -22.22%', 'Answer: revenue was
    $12.6 million in 2019'), gives that number and the scale right after it, never a later year or an
    explanation's numbers; a short text answer ('fiscal 2019 revenue') stays a text span."""
    statement = _answer_statement(output)
    parts = [p.strip() for p in re.split(r"[;|]", statement) if p.strip()]
    numbers = numbers_in(statement)
    if len(parts) == 1 and numbers and (numbers[0].start <= 1 or len(statement.split()) > 3):
        span, scale = _number_span(statement, number_in_statement(statement))
        return {"answer": [span], "scale": scale}
    scale = ""
    low = statement.lower()
    if "%" in statement or "percent" in low:
        scale = "percent"
    else:
        for word in _SCALES[:3]:
            if re.search(rf"\b{word}s?\b", low):
                scale = word
                break
    spans = []
    for part in parts:
        part = re.sub(rf"\b(?:{'|'.join(_SCALES)})s?\b", "", part, flags=re.I).strip().rstrip(".").strip()
        if part:
            spans.append(part)
    return {"answer": spans, "scale": scale}


@register_extractor("text")
def extract_text(output: str, doc: dict, spec) -> str:
    """Free text (summaries, open QA): the final answer part."""
    return final_answer(output)


@register_extractor("raw")
def extract_raw(output: str, doc: dict, spec) -> str:
    """Judge tasks: the whole reply goes to the judge."""
    return output


def entities_to_tags(output: str, tokens: list[str], entity_types: list[str]) -> list[str]:
    """'entity, TYPE' lines -> IOB2 tags over `tokens` (first unused occurrence; unknown types ignored)."""
    tags = ["O"] * len(tokens)
    low_tokens = [t.lower() for t in tokens]
    types = {t.upper() for t in entity_types}
    for line in output.splitlines():
        entity, sep, etype = line.strip().strip("-*• ").rpartition(",")
        etype = etype.strip().strip(".").upper()
        if not sep or etype not in types:
            continue
        words = [w.lower() for w in entity.split()]
        if not words:
            continue
        for start in range(len(tokens) - len(words) + 1):
            span = range(start, start + len(words))
            if low_tokens[start : start + len(words)] == words and all(tags[i] == "O" for i in span):
                tags[start] = f"B-{etype}"
                for i in span[1:]:
                    tags[i] = f"I-{etype}"
                break
    return tags


@register_extractor("ner")
def extract_ner(output: str, doc: dict, spec) -> list[str]:
    return entities_to_tags(final_answer(output), doc["tokens"], spec.entity_types)


DEFAULT_EXTRACTOR = {
    "multiple_choice": "letter",
    "classification": "label",
    "ner": "ner",
    "summarization": "text",
    "numeric_qa": "number",
    "judge": "raw",
}


def extractor_name(spec) -> str:
    return spec.extraction or DEFAULT_EXTRACTOR[spec.answer_type]
