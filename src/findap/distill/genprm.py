"""Trajectory-GenPRM: find an incorrect solution's first wrong step, correct it, and finish the solution.

    original : Step 1 ok | Step 2 WRONG | Step 3 builds on it | Answer: wrong
    judge    : "First error: Step 2 / Correction: Step 2: <fixed>"
    prefix   : Step 1 ok | Step 2 fixed
    continue : the policy (or judge) writes Step 3.. and the Answer from that prefix
    pair     : chosen = prefix + continuation, rejected = original

Continuing needs the model to resume its own assistant turn: with a local tokenizer that has a chat template we
render the conversation and append the prefix as raw text (the model literally continues it); an endpoint
without template access gets the prefix in a user message and is asked to go on from it.
"""
from __future__ import annotations

import re

from findap.distill.genorm import Candidate
from findap.distill.judges import StepJudgement, parse_prm, prm_messages
from findap.distill.prompts import ReasoningItem
from findap.distill.trajectories import policy_messages, split_steps
from findap.engines.base import Engine, GenerationRequest
from findap.eval.judge import Judgement, JudgeSettings, run_judge

CONTINUE_ASK = (
    "Below is the start of a solution to the problem above; its steps are correct. Continue it from the next "
    "step to the end, in the same 'Step N:' format, without repeating the given steps, and finish with "
    "'Answer: <final answer>'.\n\n"
)


_LABEL = re.compile(r"^(\s*\**\s*)step\s+\d+(\s*\**\s*[:.)-])", re.I | re.M)


def numbered_steps(steps: list[str]) -> list[str]:
    """The steps as the judge sees them: step i (1-based) labelled 'Step i:'. A solution without labels (split
    on lines) gets them added; a labelled one is renumbered 1..n (models skip or repeat numbers), so the judge's
    'Step K' is always steps[K - 1]."""
    shown = []
    for i, step in enumerate(steps, start=1):
        relabelled, n = _LABEL.subn(rf"\g<1>Step {i}\g<2>", step, count=1)
        shown.append(relabelled if n else f"Step {i}: {step}")
    return shown


def step_index(first_error: int, n_steps: int) -> int | None:
    """The list index of the judge's 1-based 'Step K' among `n_steps` shown steps; None when out of range."""
    return first_error - 1 if 1 <= first_error <= n_steps else None


def judge_steps(judge: Engine, items: dict[str, ReasoningItem], cands: list[Candidate], cfg, seed: int,
                progress: bool = True) -> list[Judgement[StepJudgement]]:
    prompts = [prm_messages(items[c.item_id], numbered_steps(split_steps(c.text))) for c in cands]
    settings = JudgeSettings(max_new_tokens=cfg.judge_max_new_tokens, retries=cfg.judge_retries, seed=seed)
    return run_judge(judge, prompts, parse_prm, settings, progress=progress)


def corrected_prefix(steps: list[str], judgement: StepJudgement) -> str:
    """The correct steps before the error, then the corrected step (ValueError for a step that is not shown)."""
    index = step_index(judgement.first_error, len(steps))
    if index is None:
        raise ValueError(f"GenPRM: the judge named step {judgement.first_error}; the solution has {len(steps)}")
    return "\n".join(steps[:index] + [judgement.correction])


def continuation_request(engine: Engine, item: ReasoningItem, prefix: str, max_new_tokens: int) -> GenerationRequest:
    tokenizer = getattr(engine, "tokenizer", None)
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(policy_messages(item), add_generation_prompt=True, tokenize=False)
        return GenerationRequest(text + prefix + "\n", max_new_tokens=max_new_tokens)
    system, user = policy_messages(item)
    messages = [system, {"role": "user", "content": user["content"] + "\n\n" + CONTINUE_ASK + prefix}]
    return GenerationRequest(messages, max_new_tokens=max_new_tokens)


def join_continuation(prefix: str, continuation: str) -> str:
    return prefix + "\n" + continuation.strip()
