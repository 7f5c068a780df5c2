"""Preference pair records (the distill -> align contract) and the GenORM pair policy.

    {"id", "prompt": [messages], "chosen": str, "rejected": str,
     "source": "genorm" | "genprm" | "genprm-step", "rationale": str, "meta": {...}}
"""
from __future__ import annotations

import itertools
import random

from findap.distill.genorm import Candidate
from findap.distill.prompts import ReasoningItem
from findap.distill.trajectories import policy_messages


def _chosen_rank(c: Candidate) -> tuple:
    # On-policy samples before the reference; both signals agreeing before one; shorter before longer.
    return (c.is_reference, c.judge is not True or c.check is not True, len(c.text))


def _rejected_rank(c: Candidate) -> tuple:
    # Clearly wrong (judge and check agree) first; then the sample order.
    return (c.judge is not False or c.check is not False, c.index)


def select_orm_pairs(correct: list[Candidate], incorrect: list[Candidate], policy: str, cap: int,
                     rng: random.Random) -> list[tuple[Candidate, Candidate]]:
    """(chosen, rejected) combinations under the pair policy; identical texts never pair."""
    if policy == "best_worst":
        combos = [(c, r) for c in sorted(correct, key=_chosen_rank) for r in sorted(incorrect, key=_rejected_rank)]
        combos = [(c, r) for c, r in combos if c.text != r.text]
        return combos[:1]
    combos = [(c, r) for c, r in itertools.product(correct, incorrect) if c.text != r.text]
    seen, unique = set(), []
    for c, r in combos:  # duplicate samples would repeat the same pair
        if (c.text, r.text) not in seen:
            seen.add((c.text, r.text))
            unique.append((c, r))
    return unique if len(unique) <= cap else rng.sample(unique, cap)


def orm_record(item: ReasoningItem, chosen: Candidate, rejected: Candidate, n: int) -> dict:
    return {
        "id": f"{item.id}/orm/{n}",
        "prompt": policy_messages(item),
        "chosen": chosen.text,
        "rejected": rejected.text,
        "source": "genorm",
        "rationale": rejected.judge_output or "",
        "meta": {
            "item_id": item.id, "dataset": item.source, "gold": item.gold,
            "chosen_sample": chosen.index, "rejected_sample": rejected.index,
            "chosen_answer": chosen.answer, "rejected_answer": rejected.answer,
            "chosen_check": chosen.check, "rejected_check": rejected.check,
            "chosen_judge": chosen.judge, "rejected_judge": rejected.judge,
            "chosen_rationale": chosen.judge_output or "",
        },
    }


def prm_records(item: ReasoningItem, rejected: Candidate, steps: list[str], first_error: int, correction: str,
                corrected: str, judge_text: str, step_pairs: bool) -> list[dict]:
    """The full-trajectory pair (corrected over original) and, optionally, the Step-DPO pair.

    The step pair keeps the contract's plain-string responses: both sides start with the same correct prefix
    (steps before the error), so the prefix's log-probs cancel exactly in the DPO margin and only the corrected
    step vs the wrong step is preferred, conditioned on the shared prefix.
    """
    meta = {"item_id": item.id, "dataset": item.source, "gold": item.gold, "rejected_sample": rejected.index,
            "first_error_step": first_error, "n_steps": len(steps), "correction": correction,
            "rejected_answer": rejected.answer}
    records = [{"id": f"{item.id}/prm/{rejected.index}", "prompt": policy_messages(item), "chosen": corrected,
                "rejected": rejected.text, "source": "genprm", "rationale": judge_text, "meta": meta}]
    wrong_step = steps[first_error - 1]
    if step_pairs and wrong_step.strip() != correction.strip():
        prefix = "".join(step + "\n" for step in steps[: first_error - 1])
        records.append({"id": f"{item.id}/prm-step/{rejected.index}", "prompt": policy_messages(item),
                        "chosen": prefix + correction, "rejected": prefix + wrong_step, "source": "genprm-step",
                        "rationale": judge_text, "meta": {**meta, "prefix_chars": len(prefix)}})
    return records
