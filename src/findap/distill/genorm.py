"""Trajectory-GenORM: sample N solutions per prompt, label each whole solution correct or incorrect.

A label comes from the generative outcome judge, the exact answer check, or both agreeing (`label_mode`).
Sampling seeds depend only on (seed, prompt id, sample index), so a resumed or re-batched run samples the same
solutions.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from findap.distill.judges import orm_messages, parse_orm
from findap.distill.prompts import ReasoningItem
from findap.distill.trajectories import check_answer, extract_answer, gold_answer, policy_messages
from findap.engines.base import Engine, GenerationRequest
from findap.eval.judge import JudgeSettings, run_judge


@dataclass
class Candidate:
    item_id: str
    index: int  # sample index; -1 for the source's reference solution
    text: str
    check: bool | None  # exact answer check; None when the gold answer cannot be read (the judge decides)
    answer: str | None = None
    judge: bool | None = None  # GenORM verdict; None: not asked, or unparsable after retries
    judge_output: str | None = None
    judge_attempts: int = 0
    label: bool | None = None  # the final decision; None: dropped

    @property
    def is_reference(self) -> bool:
        return self.index < 0


def sample_seed(seed: int, item_id: str, index: int) -> int:
    digest = hashlib.sha256(f"{seed}:{item_id}:{index}".encode()).digest()
    return int.from_bytes(digest[:7], "big")


def sample_candidates(engine: Engine, items: list[ReasoningItem], cfg, seed: int,
                      progress: bool = True) -> dict[str, list[Candidate]]:
    requests = [
        GenerationRequest(policy_messages(item), max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                          top_p=cfg.top_p, seed=sample_seed(seed, item.id, j))
        for item in items for j in range(cfg.n_samples)
    ]
    texts = engine.generate(requests, progress=progress)
    out: dict[str, list[Candidate]] = {}
    for n, item in enumerate(items):
        cands = [_candidate(item, j, texts[n * cfg.n_samples + j]) for j in range(cfg.n_samples)]
        if cfg.include_reference and item.reference_solution:
            reference = item.reference_solution
            if "answer:" not in reference.lower():
                reference += f"\nAnswer: {item.gold}"
            cands.append(_candidate(item, -1, reference))
        out[item.id] = cands
    return out


def _candidate(item: ReasoningItem, index: int, text: str) -> Candidate:
    check = check_answer(text, item)
    if gold_answer(item) is None:
        check = None  # nothing to check against: never "wrong" by default, the judge decides (`needs_judge`)
    elif check is None:
        check = False  # the gold is readable and the solution states no answer: that is a wrong solution
    return Candidate(item.id, index, text.strip(), check, extract_answer(text, item.answer_type))


def needs_judge(cand: Candidate, mode: str) -> bool:
    """Whether the GenORM judge must see this candidate: always under 'judge' and 'both'; under 'check' only
    when there is no exact check (unreadable gold answer), the documented judge fallback. References never."""
    return not cand.is_reference and (mode != "check" or cand.check is None)


def judge_candidates(judge: Engine, items: dict[str, ReasoningItem], cands: list[Candidate], cfg,
                     seed: int, progress: bool = True) -> None:
    """Ask the GenORM judge about every candidate that `needs_judge` under `cfg.label_mode` (in place)."""
    todo = [c for c in cands if needs_judge(c, cfg.label_mode)]
    if not todo:
        return
    prompts = [orm_messages(items[c.item_id], c.text) for c in todo]
    settings = JudgeSettings(max_new_tokens=cfg.judge_max_new_tokens, retries=cfg.judge_retries, seed=seed)
    for cand, judgement in zip(todo, run_judge(judge, prompts, parse_orm, settings, progress=progress)):
        cand.judge, cand.judge_output, cand.judge_attempts = judgement.value, judgement.outputs[-1], judgement.attempts


def decide(cand: Candidate, mode: str) -> bool | None:
    """The label under `mode`; the reference solution is correct by construction."""
    if cand.is_reference:
        return True
    if mode == "check" and cand.check is not None:
        return cand.check  # check None: the judge's verdict below (None when it gave none: dropped, counted)
    if mode == "both" and cand.check is not None:
        return cand.check if cand.judge == cand.check else None
    return cand.judge
