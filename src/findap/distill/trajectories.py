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
from findap.eval.answers import same_number, sentences, single_number, stated_letter, stated_number

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


# What a question's ask says when it wants a percent (or the decimal form of one) as its answer. A '%' or
# 'percent' that a number carries ('a 20% discount', 'what is 20 percent of 50') is data, not the unit asked for.
_NUMBER_WORD = (r"(?:\d[\d,.]*|one|two|three|four|five|six|seven|eight|nine|ten|eleven|twelve|thirteen|fourteen|"
                r"fifteen|sixteen|seventeen|eighteen|nineteen|twenty|thirty|forty|fifty|sixty|seventy|eighty|"
                r"ninety|hundred)\b")
_PERCENT_UNIT = r"(?:percent(?:age)?s?\b|per\s?cent\b|pct\b|basis\s+points?\b|%)"
_ASKS_PERCENT = re.compile(
    # 'what percentage of ...', 'what is his new win percentage', 'by what percent', 'how many basis points',
    # 'calculate the percent increase': at most four words, none a number, between the ask and the unit
    rf"\b(?:what|which|how\s+many|how\s+much|find|calculate|compute|determine)\s+"
    rf"(?:(?!{_NUMBER_WORD})[\w'’-]+\s+){{0,4}}?{_PERCENT_UNIT}"
    # 'in percent', 'as a percentage', '(in %)', 'in basis points'; 'as a decimal', 'as a ratio', 'in decimal form'
    rf"|\b(?:in|as|into)\s+(?:an?\s+)?(?:{_PERCENT_UNIT}|decimal\b|ratio\b)|\bin\s+decimal\s+form\b",
    re.I,
)


def _ask(question: str) -> str:
    """The sentences of the question's last paragraph that ask: those ending in '?', and the last one ('Express
    the answer as a percentage.', TAT-QA's appended '(answer in percent)')."""
    paragraphs = [p for p in re.split(r"\n\s*\n", question.strip()) if p.strip()]
    if not paragraphs:
        return ""
    said = sentences(paragraphs[-1])
    return " ".join([s for s in said[:-1] if s.rstrip().endswith("?")] + said[-1:])


def asks_percent(question: str) -> bool:
    """Whether the question asks for a percent or the decimal form of one ('What percentage of ...?', '... in
    percent?', '(answer in percent)', 'as a decimal'), read from its ask alone: TAT-QA's tables and GSM8K's
    stories carry '%' in numbers that say nothing about the unit of the answer ('a 20% discount. How much ...?')."""
    return bool(_ASKS_PERCENT.search(_ask(question)))


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
        return same_number(stated_number(solution), gold, asks_percent(item.question))
    if item.answer_type == "choice":
        return pred == gold
    return " ".join(pred.lower().split()) == " ".join(gold.lower().split())
