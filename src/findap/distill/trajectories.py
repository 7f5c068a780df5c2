"""Solutions as explicit steps: how the policy is asked, how a solution splits into steps, and the answer check.

A solution looks like

    Step 1: Rate as a decimal = 8.25 / 100 = 0.0825
    Step 2: Interest = 1500 × 0.0825 × 8 = 990
    Answer: 990

Steps are what GenPRM points at ("the first wrong step is Step 2"), and the `Answer:` line is what the exact
check reads. Models that ignore the format still get a best-effort reading (last number / last choice letter).
"""
from __future__ import annotations

import re

from findap.distill.prompts import ReasoningItem

SYSTEM = (
    "You solve finance and math problems carefully. Work in numbered steps, one calculation or idea per step, "
    "each on its own line starting with 'Step N:'. Finish with a last line 'Answer: <final answer>'."
)
CHOICE_HINT = " For multiple choice, the final line names only the letter, for example 'Answer: B'."

_STEP = re.compile(r"^\s*\**\s*step\s+(\d+)\s*\**\s*[:.)-]", re.I | re.M)
_ANSWER_LINE = re.compile(r"^\s*\**\s*(?:final\s+)?answer\s*\**\s*[:=]\s*\**\s*(.+?)\s*$", re.I | re.M)
_NUMBER = re.compile(r"-?\(?\$?\s*-?\d[\d,]*(?:\.\d+)?\)?")
_LETTER = re.compile(r"\b([A-E])\b")


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


def parse_number(text: str) -> float | None:
    """The last number in `text`: '$1,234.5' -> 1234.5, '(12.3)' -> -12.3 (accounting negative), '15%' -> 15."""
    matches = _NUMBER.findall(text)
    if not matches:
        return None
    raw = matches[-1].replace("$", "").replace(",", "").replace(" ", "")
    negative = raw.startswith("(") and raw.endswith(")")
    raw = raw.strip("()")
    try:
        value = float(raw)
    except ValueError:
        return None
    return -abs(value) if negative else value


def extract_answer(solution: str, answer_type: str) -> str | None:
    """The final answer as a comparable string (a number, a letter, or text); None when there is none."""
    line = answer_text(solution)
    if answer_type == "number":
        value = parse_number(line if line is not None else solution[-200:])
        return None if value is None else repr(value)
    if answer_type == "choice":
        letters = _LETTER.findall(line if line is not None else solution[-200:])
        return letters[0] if line is not None and letters else (letters[-1] if letters else None)
    return line


def numbers_match(pred: float, gold: float, rel_tol: float = 1e-2) -> bool:
    """Equal up to display rounding (1% relative, or 0.01 absolute near zero). A percent answer written as a
    fraction (0.2222 for 22.22) is also accepted: solutions mix both and the prompt rarely fixes one."""
    def close(a: float, b: float) -> bool:
        return abs(a - b) <= max(0.01, rel_tol * abs(b))

    return close(pred, gold) or close(pred * 100, gold) or close(pred, gold * 100)


def check_answer(solution: str, item: ReasoningItem) -> bool | None:
    """True/False against the gold answer; None when the solution states no answer we can read."""
    pred = extract_answer(solution, item.answer_type)
    if pred is None:
        return None
    if item.answer_type == "number":
        gold = parse_number(item.gold)
        return None if gold is None else numbers_match(float(pred), gold)
    if item.answer_type == "choice":
        return pred.upper() == item.gold.strip().upper()[:1]
    return " ".join(pred.lower().split()) == " ".join(item.gold.lower().split())
