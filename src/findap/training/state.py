"""The training state both loops keep and every checkpoint saves (`state.json`), and best-checkpoint selection.

Selection: an evaluation measures some values (`dev_loss`, FinEval scores, ...); the state's `select_on` names
the one that picks the best step (lower dev loss, higher `fineval_mean`). A tie keeps the earlier step; a
non-finite value is never selected and counts against patience; an evaluation that did not measure the value
(FinEval runs every k-th evaluation) neither improves nor counts.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

SELECT_KEYS = {"dev_loss": "dev_loss", "fineval": "fineval_mean"}  # select_on -> the measured value it reads
HIGHER_IS_BETTER = {"fineval_mean"}

# state.json keys written before the state was typed, by the stage-1 loop and the align loop
LEGACY_KEYS = {"global_step": "step", "best_dev": "best_dev_loss"}


@dataclass
class TrainingState:
    step: int = 0  # optimizer steps done
    tokens: int = 0  # real (non-padding) tokens run
    trained_tokens: int = 0  # tokens with a loss
    wall_s: float = 0.0  # training time so far, over resumes
    select_on: str = "dev_loss"
    selection_signature: dict = field(default_factory=lambda: {"on": "dev_loss"})
    best_score: float | None = None  # the selecting value at best_step
    best_step: int | None = None
    best_dev_loss: float | None = None  # dev loss at best_step
    best_fineval_mean: float | None = None
    bad_evals: int = 0  # evaluations since the last improvement

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict) -> "TrainingState":
        """A state from state.json, also from checkpoints written before the state was typed."""
        raw = {LEGACY_KEYS.get(k, k): v for k, v in raw.items()}
        if "best_score" not in raw:
            raw["best_score"] = raw.get("best_dev_loss")
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in known})

    def record_evaluation(self, measured: dict, step: int) -> bool:
        """Fold one evaluation into the state; True when `step` is the new best (its weights must be saved)."""
        key = SELECT_KEYS[self.select_on]
        score = measured.get(key)
        if score is None:
            return False
        if not math.isfinite(score):
            self.bad_evals += 1
            return False
        better = self.best_score is None or (score > self.best_score if key in HIGHER_IS_BETTER
                                             else score < self.best_score)
        if not better:
            self.bad_evals += 1
            return False
        self.best_score, self.best_step, self.bad_evals = score, step, 0
        self.best_dev_loss, self.best_fineval_mean = measured.get("dev_loss"), measured.get("fineval_mean")
        return True

    def out_of_patience(self, patience: int | None) -> bool:
        return patience is not None and self.bad_evals >= patience
