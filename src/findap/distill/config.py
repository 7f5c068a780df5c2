"""Recipe section for the distill stage: Trajectory-GenORM and Trajectory-GenPRM preference pairs."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from findap.engines.config import EngineConfig


class PromptSource(BaseModel):
    """A reasoning prompt set with gold answers."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["exercises", "cfa", "gsm8k", "tatqa", "jsonl"] = Field(
        description="exercises: findap's demo finance calculations; cfa: CFA-Easy JSON; gsm8k: GSM8K JSONL "
        "(`#### N`); tatqa: TAT-QA JSON (arithmetic/count questions); jsonl: any file with question + answer."
    )
    path: str | None = Field(None, description="File to read, relative to the data root (findap.data_root); exercises: "
                                  "None = the shipped demo file.")
    limit: int | None = Field(None, ge=1, description="Use at most this many prompts from this source.")
    question_field: str = Field("question", description="jsonl: field holding the question.")
    answer_field: str = Field("answer", description="jsonl: field holding the gold answer.")
    answer_type: Literal["number", "choice", "text"] = Field("number", description="jsonl: how answers compare.")


class DistillConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="Run this stage in `findap run`.")
    sources: list[PromptSource] = Field(
        default_factory=lambda: [PromptSource(kind="exercises", limit=200)],
        description="Prompt sets, read in order.",
    )
    policy: EngineConfig = Field(
        default_factory=EngineConfig, description="The model whose solutions are sampled, and its engine; model "
        "None: the stage's policy (the trained model, else the recipe model).")
    judge: EngineConfig | None = Field(
        None, description="GenORM/GenPRM judge and its engine; model None: the stage's policy (as for policy). None: "
        "the policy engine judges itself.")
    n_samples: int = Field(4, ge=1, description="Solutions sampled per prompt.")
    temperature: float = Field(0.8, ge=0.0, description="Sampling temperature of the policy.")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    max_new_tokens: int = Field(384, ge=1, description="Token budget of one solution.")
    include_reference: bool = Field(
        False, description="Add the source's reference solution (when it has one) as a known-correct candidate."
    )
    label_mode: Literal["judge", "check", "both"] = Field(
        "both",
        description="What makes a solution correct: the GenORM judge's verdict, the exact answer check, or both "
        "agreeing (disagreements are dropped). Without a gold answer, 'both' and 'check' fall back to the judge.",
    )
    pair_policy: Literal["all", "best_worst"] = Field(
        "all", description="all: every correct x incorrect combination; best_worst: one pair per prompt."
    )
    max_pairs_per_prompt: int = Field(4, ge=1, description="Cap on GenORM pairs per prompt (seeded subsample).")
    genorm: bool = Field(True, description="Emit outcome (whole-trajectory) pairs.")
    genprm: bool = Field(True, description="Correct incorrect solutions at their first wrong step.")
    genprm_per_prompt: int = Field(1, ge=1, description="Incorrect solutions per prompt sent to the GenPRM judge.")
    continue_with: Literal["policy", "judge"] = Field(
        "policy", description="Who completes a corrected prefix (self-generated corrections work best: Step-DPO)."
    )
    require_correct_continuation: bool = Field(
        True, description="Keep a GenPRM pair only if the corrected trajectory reaches the gold answer."
    )
    step_pairs: bool = Field(
        False, description="Also emit Step-DPO pairs: shared prefix + corrected step vs prefix + wrong step."
    )
    judge_max_new_tokens: int = Field(512, ge=1, description="Token budget of one judge answer.")
    judge_retries: int = Field(2, ge=0, description="Re-asks (sampled) for unparsable judge output before dropping.")
    dev_fraction: float = Field(0.05, ge=0.0, lt=1.0, description="Share of prompts whose pairs go to dev_pairs.jsonl.")
    prompts_per_batch: int = Field(8, ge=1, description="Prompts processed together (results appended per prompt).")
    seed: int | None = Field(None, description="Sampling seed; default: the recipe's seed.")
