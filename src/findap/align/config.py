"""Recipe section for the align stage: DPO + NLL on the chosen response (Iterative RPO).

Defaults follow the FinDAP recipe (paper Table 5): beta 0.1, alpha 1, LR 5e-7, 10% warmup, 32K-token steps, stop
on development loss. The knobs shared with stage 1 (optimizer, schedule, LoRA, step budget, cadence, logging) are
findap.training.knobs.TrainingKnobs, under the same names as in `train:`.
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from findap.training.knobs import TrainingKnobs


class AlignConfig(TrainingKnobs):
    enabled: bool = Field(True, description="Run this stage in `findap run`.")
    model: str | None = Field(
        None, description="Policy to align; default: the train stage's model dir, else the recipe's model."
    )
    pairs: str | None = Field(None, description="Preference pairs JSONL; default: the distill stage's pairs.jsonl.")
    dev_pairs: str | None = Field(
        None, description="Development pairs JSONL; default: distill's dev_pairs.jsonl, else a slice of the prompts."
    )
    dev_fraction: float = Field(
        0.05, ge=0.0, lt=1.0, description="Share of prompts (all pairs of each) held out for dev loss when no dev "
        "file exists."
    )
    beta: float = Field(0.1, gt=0.0, description="DPO inverse temperature.")
    alpha: float = Field(1.0, ge=0.0, description="Weight of the NLL term on the chosen response (0 = plain DPO).")
    nll_norm: Literal["per_example", "token_mean"] = Field(
        "per_example",
        description="per_example: each chosen response's NLL divided by its length, then averaged over pairs "
        "(Iterative RPO); token_mean: summed NLL over all chosen tokens of the batch (TRL's 'sft' term).",
    )
    # shared knobs whose default differs from stage 1's
    lr: float = Field(5e-7, gt=0.0, description="Peak learning rate (AdamW).")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay (never on norms, biases and other 1-D "
                                "parameters).")
    tokens_per_step: int = Field(32768, ge=16, description="Token budget of one optimizer step (all packed rows).")
    loss_chunk_tokens: int = Field(1024, ge=1, description="Target tokens per chunk of the vocabulary projection.")
    patience: int | None = Field(
        None, ge=1, description="Stop after this many dev evaluations without improvement (None: never stop early)."
    )
    lora_targets: list[str] | str = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        description="Module names that get LoRA adapters (peft target_modules).",
    )
    row_tokens: int = Field(
        4096, ge=64, description="Tokens per packed row (one forward pass); rows are summed up to tokens_per_step."
    )
    max_length: int = Field(2048, ge=16, description="Max tokens of prompt + one response; longer is truncated.")
    share_prompt: bool = Field(
        True,
        description="Pack each prompt once with both responses attending to it (responses masked from each "
        "other); False packs prompt+chosen and prompt+rejected as two documents.",
    )
    seed: int | None = Field(None, description="Shuffle/initialisation seed; default: the recipe's seed.")
