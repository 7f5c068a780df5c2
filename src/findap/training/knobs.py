"""Config fields both trainers share, under one name each: stage 1's `train:` and alignment's `align:` sections
inherit them (each may change a default, never a meaning).

Renamed knobs stay known: a recipe that still uses an old name gets a validation error naming the new one, so a
stale recipe never runs with a silently ignored setting.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

RENAMED = {
    "save_every": "checkpoint_every",
    "batch_tokens": "tokens_per_step",
    "logprob_chunk": "loss_chunk_tokens",
    "lora": "finetune (finetune: lora, or finetune: full)",
}


class TrainingKnobs(BaseModel):
    """Optimizer, schedule, LoRA, step budget, evaluation cadence and logging of a training stage."""

    model_config = ConfigDict(extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _refuse_renamed(cls, data):
        if isinstance(data, dict):
            old = [k for k in RENAMED if k in data]
            if old:
                raise ValueError("; ".join(f"`{k}` was renamed: use `{RENAMED[k]}`" for k in old))
        return data

    # optimizer and learning-rate curve
    lr: float = Field(5e-6, gt=0, description="peak learning rate (AdamW)")
    warmup: float = Field(0.1, ge=0, le=1, description="fraction of the steps spent in linear warmup (rounded to "
                          "whole steps: under half a step is no warmup)")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay (never on norms, biases and other 1-D "
                                "parameters)")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon")
    grad_clip: float = Field(1.0, ge=0, description="max global gradient norm; 0 disables clipping")
    schedule: Literal["linear", "cosine", "constant"] = Field("linear", description="decay after warmup")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final LR as a fraction of the peak")
    epochs: float = Field(1.0, gt=0, description="passes over the training data (fractions allowed)")
    max_steps: int | None = Field(None, ge=1, description="cap on optimizer steps")

    # what is trained
    finetune: Literal["full", "lora"] = Field("full", description="full fine-tuning or LoRA (merged on output)")
    lora_r: int = Field(16, ge=1, description="LoRA rank")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling numerator")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout")
    lora_targets: list[str] | str = Field("all-linear", description="modules LoRA adapts (peft target_modules)")

    # step budget and memory
    tokens_per_step: int = Field(16384, ge=16, description="token budget of one optimizer step")
    loss_chunk_tokens: int = Field(2048, ge=1, description="target tokens per LM-head chunk (memory bound)")

    # evaluation, checkpoints, logging
    eval_every: int = Field(50, ge=1, description="optimizer steps between dev evaluations (and at the end)")
    patience: int | None = Field(3, ge=1, description="dev evaluations without improvement before stopping "
                                 "(None: never stop early)")
    checkpoint_every: int = Field(50, ge=1, description="optimizer steps between resumable checkpoints")
    tensorboard: bool = Field(True, description="also log to TensorBoard when it is installed")
    progress: bool = Field(True, description="show a rich progress bar with tokens/s")
