"""Answer extraction: raw model output -> a prediction the metrics can score.

Every extractor is `fn(output: str, doc: dict, spec: TaskSpec) -> prediction` (JSON-serialisable; None when
nothing usable was found, which metrics count as `missing` and as wrong). Direct and CoT outputs go through
the same code: `final_answer` first keeps what follows the last "Answer:" line when there is one, so reasoning
before it never leaks into the prediction.
"""
from __future__ import annotations

import re

from findap.eval.registry import register_extractor
from findap.eval.task import LETTERS

_FINAL = re.compile(r"(?:final answer|answer|selection)\s*(?:is)?\s*[:：]", re.I)


def final_answer(output: str) -> str:
    """Text after the last 'Answer:' / 'Final answer:' / 'Selection:' marker, else the whole output."""
    matches = list(_FINAL.finditer(output))
    if matches:
        tail = output[matches[-1].end():].strip()
        if tail:
            return tail
    return output.strip()


def _word(term: str) -> re.Pattern:
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(term)}(?![A-Za-z0-9])", re.I)


def match_label(text: str, labels: list[str], synonyms: dict[str, list[str]]) -> str | None:
    """The first label (in choice order) whose name or a synonym appears as a whole word."""
    for label in labels:
        for term in [label, *synonyms.get(label, [])]:
            if _word(term).search(text):
                return label
    return None


@register_extractor("label")
def extract_label(output: str, doc: dict, spec) -> str | None:
    """Classification: look in the final answer first, then in the whole output."""
    answer = final_answer(output)
    return match_label(answer, spec.labels, spec.synonyms) or (
        match_label(output, spec.labels, spec.synonyms) if answer != output.strip() else None
    )


def letter_index(output: str, n_choices: int) -> int | None:
    """`[[A]]`, `Answer: B`, `(C)`, or `D.` / `D` alone at a line start -> option index (the last one stated)."""
    valid = LETTERS[:n_choices]
    patterns = [
        rf"\[\[\s*([{valid}])\s*\]\]",
        rf"(?i:answer|selection|option)\s*(?i:is)?\s*[:：]?\s*\(?\**([{valid}])\b",
        rf"\(([{valid}])\)",
        rf"^\s*\**([{valid}])\**\s*(?:[.):]|$)",
    ]
    for pattern in patterns:
        found = re.findall(pattern, output, flags=re.M)
        if found:
            # the last explicit statement wins: CoT may weigh options before concluding
            return valid.index(found[-1])
    return None


@register_extractor("letter")
def extract_letter(output: str, doc: dict, spec) -> int | None:
    """Multiple choice answered in text: the option letter, or the option's own text as a fallback."""
    idx = letter_index(final_answer(output), len(doc["choices"]))
    if idx is None:
        idx = letter_index(output, len(doc["choices"]))
    if idx is None:
        low = final_answer(output).lower()
        hits = [i for i, c in enumerate(doc["choices"]) if c.strip() and c.strip().lower() in low]
        idx = hits[0] if len(hits) == 1 else None
    return idx


_NUMBER = re.compile(r"\(?-?\$?\s?\d[\d,]*\.?\d*\)?|-?\.\d+")


def _clean_number(raw: str) -> str | None:
    negative = raw.strip().startswith("(") and raw.strip().endswith(")") or raw.strip().startswith("-")
    digits = re.sub(r"[^\d.]", "", raw).rstrip(".")
    if not digits or digits == ".":
        return None
    return ("-" if negative else "") + digits


def last_number(text: str) -> str | None:
    found = _NUMBER.findall(text)
    return _clean_number(found[-1]) if found else None


@register_extractor("number")
def extract_number(output: str, doc: dict, spec) -> str | None:
    """A single number: `#### N` (GSM8K style) wins, else the last number of the final answer."""
    m = re.findall(r"####\s*(\(?-?\$?[\d,]*\.?\d+\)?)", output)
    if m:
        return _clean_number(m[-1])
    return last_number(final_answer(output))


_SCALES = ("thousand", "million", "billion", "percent")


@register_extractor("tatqa")
def extract_tatqa(output: str, doc: dict, spec) -> dict:
    """TAT-QA style: answer spans (split on ';' or '|') and the scale word they carry."""
    answer = final_answer(output).splitlines()[0] if final_answer(output) else ""
    numbers = re.findall(r"\(?-?\$?\d[\d,]*\.?\d*\)?%?", answer)
    if not _FINAL.search(output) and len(answer.split()) > 3 and numbers:
        # a sentence with no 'Answer:' line ("The change is -22.22%"): the number it ends on is the answer
        scale_word = re.search(rf"{re.escape(numbers[-1])}\s*({'|'.join(_SCALES)})", answer, re.I)
        answer = numbers[-1] + (f" {scale_word.group(1)}" if scale_word else "")
    scale = ""
    low = answer.lower()
    if "%" in answer or "percent" in low:
        scale = "percent"
    else:
        for word in _SCALES[:3]:
            if re.search(rf"\b{word}s?\b", low):
                scale = word
                break
    spans = []
    for part in re.split(r"[;|]", answer):
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
