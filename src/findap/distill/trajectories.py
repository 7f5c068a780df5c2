"""Solutions as explicit steps: how the policy is asked, how a solution splits into steps, and the answer check.

A solution looks like

    Step 1: Rate as a decimal = 8.25 / 100 = 0.0825
    Step 2: Interest = 1500 × 0.0825 × 8 = 990
    Answer: 990

Steps are what GenPRM points at ("the first wrong step is Step 2"), and the `Answer:` line is what the exact
check reads. Models that ignore the format still get a best-effort reading: the number or letter the reply states
(`findap.eval.answers`, the same readers FinEval uses).
"""
from __future__ import annotations

import re

from findap.distill.prompts import ReasoningItem
from findap.eval.answers import StatedNumber, single_number, stated_letter, stated_number

SYSTEM = (
    "You solve finance and math problems carefully. Work in numbered steps, one calculation or idea per step, "
    "each on its own line starting with 'Step N:'. Finish with a last line 'Answer: <final answer>'."
)
CHOICE_HINT = " For multiple choice, the final line names only the letter, for example 'Answer: B'."

_STEP = re.compile(r"^\s*\**\s*step\s+(\d+)\s*\**\s*[:.)-]", re.I | re.M)
_ANSWER_LINE = re.compile(r"^\s*\**\s*(?:final\s+)?answer\s*\**\s*[:=]\s*\**\s*(.+?)\s*$", re.I | re.M)
CHOICE_LETTERS = "ABCDE"


def policy_messages(item: ReasoningItem) -> list[dict]:
    hint = CHOICE_HINT if item.answer_type == "choice" else ""
    return [{"role": "system", "content": SYSTEM + hint}, {"role": "user", "content": item.question}]


def split_steps(solution: str) -> list[str]:
    """The solution's steps, each with its 'Step N:' label, without the answer line.

    Text before the first step label is kept as part of step 1; a solution without labels splits on lines.
    """
    body = _ANSWER_LINE.split(solution)[0] if _ANSWER_LINE.search(solution) else solution
    starts = [m.start() for m in _STEP.finditer(body)]
    if not starts:
        return [line.strip() for line in body.splitlines() if line.strip()]
    starts[0] = 0
    return [body[a:b].strip() for a, b in zip(starts, starts[1:] + [len(body)]) if body[a:b].strip()]


def answer_text(solution: str) -> str | None:
    """The text after the last 'Answer:' label, or None."""
    matches = _ANSWER_LINE.findall(solution)
    return matches[-1].strip() if matches else None


def extract_answer(solution: str, answer_type: str) -> str | None:
    """The final answer as a comparable string (a number as written, '%' kept; a letter; or text); None when
    there is none. Numbers and letters are read by FinEval's own readers (`findap.eval.answers`), so a solution
    is read the same way here as a FinEval reply: the number right after the answer marker, the letter the
    answer opens with."""
    if answer_type == "number":
        number = stated_number(solution)
        return None if number is None else number.text + ("%" if number.percent else "")
    if answer_type == "choice":
        index = stated_letter(solution, len(CHOICE_LETTERS))
        return None if index is None else CHOICE_LETTERS[index]
    return answer_text(solution)


# Tolerance of the exact number check (documented in docs/alignment.md, "Labels"): a relative 0.1%, or half a
# unit in the last decimal place the GOLD answer is written with (gold 0.37 accepts 0.3712: the gold was
# rounded). Nothing looser: 1% would call 101 right for 100 and 8.5% right for 8.25%.
REL_TOL = 1e-3
_PERCENT_WORDS = re.compile(r"%|\bper\s?cent(?:age)?s?\b|\bpct\b|\bbasis\s+points?\b", re.I)


def asks_percent(question: str) -> bool:
    """Whether the question itself asks for a percent. Only its last paragraph counts: TAT-QA and CFA prompts
    start with tables and passages full of '%' that say nothing about the unit of the answer."""
    last = [p for p in re.split(r"\n\s*\n", question.strip()) if p.strip()]
    return bool(last) and bool(_PERCENT_WORDS.search(last[-1]))


def _close(pred: float, gold: float, gold_decimals: int) -> bool:
    tol = max(REL_TOL * abs(gold), 0.5 * 10 ** -gold_decimals if gold_decimals else 0.0)
    return abs(pred - gold) <= tol * (1 + 1e-9) + 1e-12  # the slack absorbs binary rounding (0.375 - 0.37)


def numbers_match(pred: StatedNumber, gold: StatedNumber, percent_question: bool = False) -> bool:
    """Equal within the tolerance above. A factor of 100 is accepted only where it is a percent: when the
    question asks for a percent (0.25 for 25%, and 25 for a gold written 0.25), or when a side writes '%' itself
    (8.25% is exactly 0.0825). 5 vs 500 is never equal."""
    preds = [pred.value] + ([pred.value / 100] if pred.percent else [])
    golds = [(gold.value, gold.decimals)] + ([(gold.value / 100, gold.decimals + 2)] if gold.percent else [])
    if percent_question:
        preds += [pred.value * 100, pred.value / 100]
    return any(_close(p, g, d) for p in preds for g, d in golds)


def gold_answer(item: ReasoningItem):
    """The gold answer in comparable form, or None when it cannot be read (the judge must decide then):
    a number must be exactly one number, a choice one letter A-E."""
    if item.answer_type == "number":
        return single_number(item.gold)
    if item.answer_type == "choice":
        letter = item.gold.strip().strip("()[].*").upper()[:1]
        return letter if letter and letter in CHOICE_LETTERS else None
    return item.gold if item.gold.strip() else None


def check_answer(solution: str, item: ReasoningItem) -> bool | None:
    """True/False against the gold answer; None when the solution states no answer we can read, or the gold
    answer itself cannot be read (see `gold_answer`)."""
    gold = gold_answer(item)
    pred = extract_answer(solution, item.answer_type)
    if gold is None or pred is None:
        return None
    if item.answer_type == "number":
        return numbers_match(stated_number(solution), gold, asks_percent(item.question))
    if item.answer_type == "choice":
        return pred == gold
    return " ".join(pred.lower().split()) == " ".join(gold.lower().split())
