"""Recipe section for stage 1 (joint CPT + IT): `train:` in a recipe YAML.

Defaults follow the paper's FinRec table where they make sense on one machine (AdamW 0.9/0.95, weight decay 0.1,
warmup 10% then 50% for group 2) and are small elsewhere (context, batch) so the demo runs on a laptop CPU. The
knobs shared with the align stage (optimizer, schedule, LoRA, step budget, cadence, logging) are
findap.training.knobs.TrainingKnobs, under the same names there.

Section-level `lr`, `warmup`, `epochs` and `max_steps` apply to every group that does not set its own, so
`--set train.lr=1e-5` changes the learning rate of every group.
"""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from findap.training.knobs import TrainingKnobs

Attention = Literal["auto", "varlen", "sdpa", "eager", "flex_attention", "flash_attention_2", "position_ids"]
GROUP_KNOBS = ("lr", "warmup", "epochs", "max_steps")  # a group's own value, else the section's


class GroupConfig(BaseModel):
    """One curriculum group: its data and, when set, its own learning rate, warmup, epochs and step cap (else the
    train section's). Group N+1 starts from group N's best checkpoint."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("group1", description="group name; data defaults to runs/<run>/curate/<name>/{train,dev}.parquet")
    train: list[str] = Field(default_factory=list, description="explicit training files (any findap.io format)")
    dev: list[str] = Field(default_factory=list, description="explicit development files (held-out CPT + IT)")
    lr: float | None = Field(None, gt=0, description="peak learning rate of this group (default: train.lr)")
    warmup: float | None = Field(None, ge=0, le=1, description="fraction of this group's steps spent in linear "
                                 "warmup (default: train.warmup)")
    epochs: float | None = Field(None, gt=0, description="passes over the group's training data "
                                 "(default: train.epochs)")
    max_steps: int | None = Field(None, ge=1, description="cap on optimizer steps for this group "
                                  "(default: train.max_steps)")


class MemoryBudget(BaseModel):
    """An explicit memory budget for the training process (instead of measuring what the machine has free)."""

    model_config = ConfigDict(extra="forbid")

    budget_gb: float | None = Field(None, gt=0, description="peak memory the training process may use, in GB "
                                    "(2^30 bytes): host memory (RSS) on CPU, GPU memory per process on CUDA; unset: "
                                    "measured as with memory: auto")
    autotune: bool = Field(False, description="time every plan that fits the budget (micro-batch, checkpointing, "
                           "loss chunk) for one forward/backward pass on the first step's rows, before training, "
                           "and keep the fastest (findap.training.autotune; the timings go to the stage's summary). "
                           "false: the estimate's own choice, the largest micro-batch that fits without "
                           "checkpointing when possible. One process only (not under torchrun / accelerate)")


class TrainConfig(TrainingKnobs):
    """Stage 1 trainer: packing with cross-document masking, instruction mask-out, curriculum, checkpoint selection
    on the dev loss or on FinEval dev tasks."""

    enabled: bool = Field(True, description="run this stage")
    groups: list[GroupConfig] = Field(
        default_factory=lambda: [GroupConfig()], description="curriculum groups, trained in order"
    )
    mode: Literal["joint", "sequential"] = Field(
        "joint", description="joint: CPT and IT mixed in one stream; sequential: CPT phase then IT phase per group"
    )
    kinds: list[Literal["cpt", "it"]] = Field(
        default_factory=lambda: ["cpt", "it"], min_length=1,
        description="which curated documents stage 1 trains on (dev loss likewise): both (the paper's recipe), "
        "[cpt] (CPT alone) or [it] (IT alone); the CPT-only / IT-only ablations share one curation this way")
    seq_len: int = Field(2048, ge=16, description="context length of a packed row")
    micro_batch_tokens: int = Field(
        4096, ge=16, description="tokens per forward/backward (gradient accumulation); with memory: auto or a "
        "budget, the largest micro-batch tried (a smaller one that divides tokens_per_step is used when it does "
        "not fit; the loss and gradients of a step do not change)")
    memory: Literal["auto", "off"] | MemoryBudget = Field(
        "auto", description="how micro_batch_tokens and gradient_checkpointing are fitted to memory before "
        "training starts. auto: estimate the peak from the model config (weights, gradients, AdamW state, "
        "activations with and without checkpointing, LM-head chunk, attention) and take the largest "
        "micro-batch that fits MemAvailable x 0.85 (CPU) or torch.cuda.mem_get_info's free memory x 0.85 "
        "(CUDA), without checkpointing when possible; {budget_gb: N}: the same against N GB; {autotune: true} "
        "(with or without budget_gb): time the plans that fit and keep the fastest; off: use "
        "micro_batch_tokens and gradient_checkpointing as given. The plan is printed; a configuration that "
        "cannot fit stops with an error before the model loads (docs/training.md, Memory)")
    attention: Attention = Field(
        "auto",
        description="document isolation: varlen (per-document kernels, fastest on CPU), sdpa/eager (4-D block "
        "mask), flex_attention (BlockMask), flash_attention_2 (cu_seqlens, GPU), position_ids (library-derived)",
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in backward to save memory (about one more forward pass); "
        "true keeps it on; false lets memory: auto / a budget turn it on when nothing fits without it")
    sharding: Literal["auto", "full_shard", "none"] = Field(
        "auto", description="several processes (torchrun / accelerate launch): full_shard = FSDP2 FULL_SHARD "
        "(parameters, gradients and AdamW state split over ranks, one unit per decoder layer); none = a full "
        "replica per rank, gradients all-reduced; auto = full_shard for finetune=full, none for LoRA (not "
        "supported sharded). One process: ignored")
    dev_max_docs: int = Field(512, ge=1, description="cap on dev documents evaluated (per kind)")
    select_on: Literal["dev_loss", "fineval"] = Field(
        "dev_loss", description="what picks the best checkpoint and drives patience: dev_loss (lowest) or fineval "
        "(highest mean FinEval dev score of fineval_tasks; the dev loss is still logged)")
    fineval_tasks: list[str] = Field(
        default_factory=list, description="FinEval tasks or groups scored on their dev split (direct mode) on the "
        "model being trained and logged as fineval_<task> and fineval_mean; empty disables. Names are checked "
        "against the task registry when training starts, before the model loads")
    fineval_limit: int = Field(100, ge=1, description="dev items per FinEval task (the same items every time)")
    fineval_every: int | None = Field(
        None, ge=1, description="optimizer steps between FinEval scorings, a multiple of eval_every; "
        "None: at every evaluation")
    fineval_batch_size: int = Field(16, ge=1, description="requests per forward pass when scoring FinEval")

    @field_validator("memory", mode="before")
    @classmethod
    def _yaml_off(cls, value):
        # YAML 1.1 (yaml.safe_load) reads a bare `memory: off` as False
        return "off" if value is False else value

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
        return self

    def group_knobs(self, group: GroupConfig) -> dict:
        """lr, warmup, epochs and max_steps of `group`: its own where set, else this section's."""
        return {k: getattr(self, k) if getattr(group, k) is None else getattr(group, k) for k in GROUP_KNOBS}

    @property
    def memory_mode(self) -> str:
        """auto, off, or budget (an explicit budget_gb)."""
        if isinstance(self.memory, str):
            return self.memory
        return "auto" if self.memory.budget_gb is None else "budget"

    @property
    def memory_autotune(self) -> bool:
        """Whether the plans that fit are timed and the fastest kept (`memory: {autotune: true}`)."""
        return isinstance(self.memory, MemoryBudget) and self.memory.autotune

    @property
    def budget_bytes(self) -> int | None:
        """The explicit memory budget (`memory: {budget_gb: N}`) in bytes; None for auto and off."""
        return int(self.memory.budget_gb * 2**30) if self.memory_mode == "budget" else None

    @property
    def rows_per_micro_batch(self) -> int:
        return self.micro_batch_tokens // self.seq_len

    @property
    def accumulation(self) -> int:
        return self.tokens_per_step // self.micro_batch_tokens
