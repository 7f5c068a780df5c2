"""Recipe section for stage 1 (joint CPT + IT): `train:` in a recipe YAML.

Defaults follow the paper's FinRec table where they make sense on one machine (AdamW 0.9/0.95, weight decay 0.1,
warmup 10% then 50% for group 2) and are small elsewhere (context, batch) so the demo runs on a laptop CPU.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Attention = Literal["auto", "varlen", "sdpa", "eager", "flex_attention", "flash_attention_2", "position_ids"]


class GroupConfig(BaseModel):
    """One curriculum group: its data, learning rate and warmup. Group N+1 starts from group N's best checkpoint."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("group1", description="group name; data defaults to runs/<run>/curate/<name>/{train,dev}.parquet")
    train: list[str] = Field(default_factory=list, description="explicit training files (any findap.io format)")
    dev: list[str] = Field(default_factory=list, description="explicit development files (held-out CPT + IT)")
    lr: float = Field(5e-6, gt=0, description="peak learning rate of this group")
    warmup: float = Field(0.1, ge=0, le=1, description="fraction of this group's steps spent in linear warmup")
    epochs: float = Field(1.0, gt=0, description="passes over the group's training data")
    max_steps: int | None = Field(None, ge=1, description="cap on optimizer steps for this group")


class TrainConfig(BaseModel):
    """Stage 1 trainer: packing with cross-document masking, instruction mask-out, curriculum, checkpoint selection
    on the dev loss or on FinEval dev tasks."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(True, description="run this stage")
    groups: list[GroupConfig] = Field(
        default_factory=lambda: [GroupConfig()], description="curriculum groups, trained in order"
    )
    mode: Literal["joint", "sequential"] = Field(
        "joint", description="joint: CPT and IT mixed in one stream; sequential: CPT phase then IT phase per group"
    )
    finetune: Literal["full", "lora"] = Field("full", description="full fine-tuning or LoRA (merged on output)")
    lora_r: int = Field(16, ge=1, description="LoRA rank")
    lora_alpha: int = Field(32, ge=1, description="LoRA scaling numerator")
    lora_dropout: float = Field(0.0, ge=0, lt=1, description="LoRA dropout")
    lora_targets: list[str] | str = Field("all-linear", description="modules LoRA adapts (peft target_modules)")

    seq_len: int = Field(2048, ge=16, description="context length of a packed row")
    tokens_per_step: int = Field(16384, ge=16, description="token budget of one optimizer step (paper: 128K)")
    micro_batch_tokens: int = Field(4096, ge=16, description="tokens per forward/backward (gradient accumulation)")
    attention: Attention = Field(
        "auto",
        description="document isolation: varlen (per-document kernels, fastest on CPU), sdpa/eager (4-D block "
        "mask), flex_attention (BlockMask), flash_attention_2 (cu_seqlens, GPU), position_ids (library-derived)",
    )
    loss_chunk_tokens: int = Field(2048, ge=64, description="trained positions per LM-head chunk (memory bound)")

    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay (not on norms and biases)")
    betas: tuple[float, float] = Field((0.9, 0.95), description="AdamW betas")
    eps: float = Field(1e-8, gt=0, description="AdamW epsilon")
    grad_clip: float = Field(1.0, ge=0, description="max global gradient norm; 0 disables clipping")
    schedule: Literal["linear", "cosine", "constant"] = Field("linear", description="decay after warmup")
    min_lr_ratio: float = Field(0.0, ge=0, le=1, description="final LR as a fraction of the peak")
    gradient_checkpointing: bool = Field(False, description="recompute activations in backward to save memory")
    sharding: Literal["auto", "full_shard", "none"] = Field(
        "auto", description="several processes (torchrun / accelerate launch): full_shard = FSDP2 FULL_SHARD "
        "(parameters, gradients and AdamW state split over ranks, one unit per decoder layer); none = a full "
        "replica per rank, gradients all-reduced; auto = full_shard for finetune=full, none for LoRA (not "
        "supported sharded). One process: ignored")

    eval_every: int = Field(50, ge=1, description="optimizer steps between evaluations (dev loss, FinEval)")
    patience: int = Field(3, ge=1, description="evaluations without improvement of the select_on score before "
                          "stopping a group")
    save_every: int = Field(50, ge=1, description="optimizer steps between resumable checkpoints")
    dev_max_docs: int = Field(512, ge=1, description="cap on dev documents evaluated (per kind)")
    select_on: Literal["dev_loss", "fineval"] = Field(
        "dev_loss", description="what picks the best checkpoint and drives patience: dev_loss (lowest) or fineval "
        "(highest mean FinEval dev score of fineval_tasks; the dev loss is still logged)")
    fineval_tasks: list[str] = Field(
        default_factory=list, description="FinEval tasks or groups scored on their dev split (direct mode) on the "
        "model being trained and logged as fineval_<task> and fineval_mean; empty disables")
    fineval_limit: int = Field(100, ge=1, description="dev items per FinEval task (the same items every time)")
    fineval_every: int | None = Field(
        None, ge=1, description="optimizer steps between FinEval scorings, a multiple of eval_every; "
        "None: at every evaluation")
    fineval_batch_size: int = Field(16, ge=1, description="requests per forward pass when scoring FinEval")
    tensorboard: bool = Field(True, description="also log to TensorBoard when it is installed")
    progress: bool = Field(True, description="show a rich progress bar with tokens/s")

    @model_validator(mode="after")
    def _budgets_fit(self) -> "TrainConfig":
        if self.micro_batch_tokens % self.seq_len:
            raise ValueError(
                f"micro_batch_tokens={self.micro_batch_tokens} must be a multiple of seq_len={self.seq_len}")
        if self.tokens_per_step % self.micro_batch_tokens:
            raise ValueError(
                f"tokens_per_step={self.tokens_per_step} must be a multiple of "
                f"micro_batch_tokens={self.micro_batch_tokens}"
            )
        if not self.groups:
            raise ValueError("groups: at least one curriculum group is needed")
        if self.sharding == "full_shard" and self.finetune == "lora":
            raise ValueError("sharding=full_shard is not supported with finetune=lora: use auto or none")
        return self

    @model_validator(mode="after")
    def _fineval_selection(self) -> "TrainConfig":
        if self.select_on == "fineval" and not self.fineval_tasks:
            raise ValueError("select_on=fineval needs fineval_tasks (FinEval task or group names, e.g. [cfa_easy])")
        if self.fineval_every is not None and self.fineval_every % self.eval_every:
            raise ValueError(f"fineval_every={self.fineval_every} must be a multiple of eval_every={self.eval_every}")
        if self.fineval_tasks:
            from findap.train.select import check_fineval_tasks  # reads the task registry only when asked

            check_fineval_tasks(self.fineval_tasks)
        return self

    @property
    def rows_per_micro_batch(self) -> int:
        return self.micro_batch_tokens // self.seq_len

    @property
    def accumulation(self) -> int:
        return self.tokens_per_step // self.micro_batch_tokens
