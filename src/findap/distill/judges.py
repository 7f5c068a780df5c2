"""What the generative reward models are asked, and how their answers are read.

GenORM (outcome) judges a whole solution against the reference answer and ends with a verdict line.
GenPRM (process) walks the steps, names the first wrong one and rewrites it. Both put their reasoning first and
the machine-readable lines last: forcing a strict format up front hurts a judge's reasoning, so the parsers
look for the last well-formed line and fall back to looser phrasings. Verdicts reuse FinEval's parser.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from findap.distill.prompts import ReasoningItem
from findap.eval.judge import parse_verdict

ORM_SYSTEM = (
    "You are a meticulous examiner. You receive a problem, its correct final answer (sometimes with a worked "
    "solution) and a candidate's solution. Decide whether the candidate reached the correct final answer with "
    "sound reasoning. Small rounding differences are fine; a right number reached by wrong reasoning is not."
)
ORM_FORMAT = (
    "First explain your assessment in a few sentences. Then write the last line exactly as "
    "'Verdict: correct' or 'Verdict: incorrect'."
)

PRM_SYSTEM = (
    "You are a meticulous examiner who checks solutions one step at a time. You receive a problem, its correct "
    "final answer (sometimes with a worked solution) and a candidate's numbered steps. Read the steps in order "
    "and stop at the first one that contains a mistake: a wrong formula, a miscalculation, a misread number, or "
    "a wrong conclusion."
)
PRM_FORMAT = (
    "Think through the steps first. Then finish with exactly two lines:\n"
    "First error: Step K\n"
    "Correction: Step K: <the whole step rewritten correctly>\n"
    "If every step is correct, finish with the single line 'First error: none'."
)


def _reference_block(item: ReasoningItem) -> str:
    block = f"Correct final answer: {item.gold}"
    if item.reference_solution:
        block = f"Worked solution:\n{item.reference_solution}\n\n" + block
    return block


def orm_messages(item: ReasoningItem, solution: str) -> list[dict]:
    user = (f"Problem:\n{item.question}\n\n{_reference_block(item)}\n\nCandidate solution:\n{solution}\n\n"
            + ORM_FORMAT)
    return [{"role": "system", "content": ORM_SYSTEM}, {"role": "user", "content": user}]


def prm_messages(item: ReasoningItem, steps: list[str]) -> list[dict]:
    numbered = "\n".join(steps)
    user = (f"Problem:\n{item.question}\n\n{_reference_block(item)}\n\nCandidate steps:\n{numbered}\n\n"
            + PRM_FORMAT)
    return [{"role": "system", "content": PRM_SYSTEM}, {"role": "user", "content": user}]


def parse_orm(text: str) -> bool | None:
    return parse_verdict(text)


# ---------------------------------------------------------------------------------------------------- GenPRM
_FIRST_ERROR = re.compile(r"first\s+(?:error|mistake|wrong\s+step|incorrect\s+step)\s*\**\s*[:=]\s*\**\s*"
                          r"(?:step\s*)?(\d+|none|no\s+error|n/?a)", re.I)
_FIRST_ERROR_PROSE = re.compile(r"first\s+(?:erroneous|incorrect|wrong|mistaken)\s+step\s+is\s+(?:step\s*)?(\d+)"
                                r"|step\s+(\d+)\s+is\s+the\s+first\s+(?:erroneous|incorrect|wrong|mistaken)", re.I)
_CORRECTION = re.compile(r"correct(?:ion|ed\s+step)\s*\**\s*[:=]\s*\**\s*(.+)", re.I)  # one line: the corrected step
_STEP_LABEL = re.compile(r"^\s*step\s*\d+\s*[:.)-]\s*", re.I)
_STEP_NUMBER = re.compile(r"\s*step\s*(\d+)\s*[:.)-]", re.I)


@dataclass(frozen=True)
class StepJudgement:
    first_error: int  # 1-based step number; 0 = the judge found no error
    correction: str | None  # the corrected step, labelled 'Step K: ...'


def _first_error(text: str) -> tuple[int, int] | None:
    """(K, where the statement ends) for the step the judge names as the first error: K >= 1, 0 for 'no
    error'; None if it named nothing. The last 'First error:' line wins (judges restate their conclusion at the
    end); prose such as 'the first incorrect step is Step 3' is the fallback."""
    matches = list(_FIRST_ERROR.finditer(text))
    if matches:
        value = matches[-1].group(1).strip().lower()
        return (int(value) if value.isdigit() else 0), matches[-1].end()
    prose = list(_FIRST_ERROR_PROSE.finditer(text))
    if prose:
        return int(prose[-1].group(1) or prose[-1].group(2)), prose[-1].end()
    return None


def first_error_step(text: str) -> int | None:
    """The step the judge names as the first error: K >= 1, 0 for 'no error', None if it named nothing."""
    found = _first_error(text)
    return None if found is None else found[0]


def parse_prm(text: str) -> StepJudgement | None:
    """A usable GenPRM answer, or None (unparsable: retried, then dropped and counted).

    An error needs a non-empty correction; the correction is relabelled as 'Step K:' so the corrected
    trajectory keeps consistent numbering.
    """
    found = _first_error(text)
    if found is None:
        return None
    k, conclusion_end = found
    if k == 0:
        return StepJudgement(0, None)
    # The correction follows the conclusion it belongs to: search right after that 'First error' statement
    # (a correction may itself say "first", so the last "first" in the text is no anchor). A judge that wrote
    # its correction first may still be read, but only a correction of that same step (not an earlier draft's).
    m = _CORRECTION.search(text, conclusion_end)
    if m is None:
        before = [c for c in _CORRECTION.finditer(text[:conclusion_end])
                  if (label := _STEP_NUMBER.match(c.group(1))) is None or int(label.group(1)) == k]
        m = before[-1] if before else None
    if not m:
        return None
    body = m.group(1).strip().splitlines()
    first_line = _STEP_LABEL.sub("", body[0]).strip().strip("*").strip() if body else ""
    if not first_line:
        return None
    return StepJudgement(k, f"Step {k}: {first_line}")
