"""Training memory you can predict: an estimate from the model's config, a budget from the machine, and a plan.

The estimate of a training process's peak (bytes) is the sum of

* `baseline`: what the process holds before the model loads (torch, tokenizer, documents), measured (VmRSS);
* `weights`: fp32 master weights, 4 B per parameter; `grads` and `adamw`: 4 B and 8 B per trainable parameter
  (AdamW's two fp32 moments), divided by the number of ranks under FSDP full_shard;
* `weight_casts`: the bf16 copies autocast makes of the weights (2 B per parameter), all of them saved for backward
  without checkpointing, one layer's and the LM head's with it;
* `activations`: what backward needs, per token per decoder layer (`activation_bytes_per_token_layer`: the fp32
  residual stream and RMSNorm intermediates, the half-precision inputs of the projections, q/k/v after RoPE,
  repeated key/value heads, attention output, the MLP's gate/up/product), times the micro-batch's tokens times
  the layers. With activation checkpointing only each layer's fp32 input is kept, plus one layer's activations
  while it is recomputed;
* `lm_head`: one loss chunk of full-vocabulary logits (log-probabilities in fp32, the half-precision product and
  gradient), the hidden-state gradient of the micro-batch and the fp32 head gradient (findap.train.loss);
* `attention`: nothing for the per-document backends (varlen, flash_attention_2: no T x T tensor); the 4-D mask
  for sdpa; the scores and probabilities of every layer for eager;

times an allocator factor for what the allocator holds beyond the live tensors (fitted below). Calibrated on this
machine against the kernel's high-water mark (VmHWM) of training SmolLM2-135M: a whole run of the real-data recipe
(the fit) and fresh processes on the benchmark's steps (bench/train_vs_trl.py --calibrate; docs/training.md,
Memory), and tested on a tiny Llama (tests/test_train_memory.py).

The budget is the memory the process may use: on CPU its resident memory now plus MemAvailable (/proc/meminfo) times
a safety factor, shared by the ranks of one host; on CUDA what torch has allocated plus `torch.cuda.mem_get_info`'s
free memory times the same factor; or an explicit `budget_gb`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from findap.host_memory import resident_bytes

GB = 2**30
SAFETY = 0.85  # of the memory measured free: other processes and the page cache move while training runs
# What the allocator holds beyond the live tensors (freed-but-cached spans, fragmentation), fitted on
# whole runs of recipes/smollm2-fin.yaml (SmolLM2-135M, 2,048-token micro-batches of mixed document lengths), not
# on a benchmark's few steps: real runs fragment more (micro-batches differ in shape from pass to pass). It is the
# larger of the fits, rounded up: an estimate that undershoots lets a plan pass its budget, one that overshoots only
# picks a smaller plan. The fits and the estimate against measured peaks: docs/results.md, "Training memory
# estimate vs measured peak".
ALLOCATOR_FACTOR = 1.50


class MemoryDoesNotFit(ValueError):
    """No micro-batch / checkpointing choice fits the budget: raised before the model is loaded."""


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a decoder-only model's config the estimate needs."""

    params: int
    trainable: int
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int

    @classmethod
    def from_config(cls, config, *, finetune: str = "full", lora_r: int = 16) -> "ModelShape":
        """From a transformers config (Llama-like: embedding, attention q/k/v/o, gated MLP, norms)."""
        d, f, layers, vocab = config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.vocab_size
        heads = config.num_attention_heads
        kv_heads = getattr(config, "num_key_value_heads", None) or heads
        head_dim = getattr(config, "head_dim", None) or d // heads
        attn = d * heads * head_dim * 2 + d * kv_heads * head_dim * 2
        layer = attn + 3 * d * f + 2 * d
        embed = vocab * d * (1 if getattr(config, "tie_word_embeddings", False) else 2)
        params = layers * layer + embed + d
        if finetune == "lora":  # adapters on every projection: r x (in + out) each
            per_layer = lora_r * ((d + heads * head_dim) * 2 + (d + kv_heads * head_dim) * 2 + 3 * (d + f))
            trainable = layers * per_layer
        else:
            trainable = params
        return cls(params, trainable, layers, d, f, heads, kv_heads, head_dim, vocab)


def activation_bytes_per_token_layer(shape: ModelShape, half: bool) -> int:
    """Bytes one token leaves saved for backward in one decoder layer (no checkpointing)."""
    a = 2 if half else 4  # autocast's dtype; the residual stream stays fp32 (fp32 master weights)
    d, f, q, kv = shape.hidden, shape.intermediate, shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    norms = 2 * 2 * d * 4  # two RMSNorms, each keeping its fp32 input and the normalised value
    casts = 5 * d * a if half else 0  # autocast's copies of the normalised inputs of q/k/v and gate/up
    attention = (2 * q + 2 * kv + kv) * a  # q and k before and after RoPE, v
    attention += 2 * (q - kv) * a if q != kv else 0  # key/value heads repeated for grouped-query attention
    attention += 2 * q * a + shape.heads * 4  # attention output, o_proj input, log-sum-exp
    mlp = 4 * f * a  # gate, SiLU(gate), up, product (down_proj's input)
    return norms + casts + attention + mlp


def estimate(shape: ModelShape, *, micro_batch_tokens: int, seq_len: int, checkpointing: bool,
             loss_chunk_tokens: int, backend: str, half: bool, shards: int = 1, baseline: int = 0) -> dict[str, int]:
    """Peak bytes of a training process, by part (see the module docstring); the key `total` is their sum."""
    t = micro_batch_tokens
    a = 2 if half else 4
    parts = {
        "baseline": baseline,
        "weights": 4 * shape.params // shards,
        "grads": 4 * shape.trainable // shards,
        "adamw": 8 * shape.trainable // shards,
        # autocast's copies (its cache is off in training, findap.models.autocast): every weight's, saved for
        # backward, without checkpointing; with it only the recomputed layer's and the LM head's
        "weight_casts": (2 * (shape.params if not checkpointing else shape.params // shape.layers
                              + shape.vocab * shape.hidden) // shards) if half else 0,
    }
    per_layer = activation_bytes_per_token_layer(shape, half)
    if checkpointing:  # each layer's fp32 input, and the layer being recomputed with its backward's buffers
        parts["activations"] = t * (shape.layers * 4 * shape.hidden + 2 * per_layer)
    else:
        parts["activations"] = t * shape.layers * per_layer
    chunk = min(loss_chunk_tokens, t)
    parts["lm_head"] = chunk * shape.vocab * (4 + 2 * a) + t * shape.hidden * 4 + shape.vocab * shape.hidden * 4
    rows = max(t // seq_len, 1)
    if backend == "sdpa":
        parts["attention"] = rows * seq_len * seq_len
    elif backend == "eager":
        attention_layers = 1 if checkpointing else shape.layers
        parts["attention"] = attention_layers * rows * shape.heads * seq_len * seq_len * (4 + a) + rows * seq_len**2 * 4
    else:
        parts["attention"] = 0
    variable = sum(v for k, v in parts.items() if k != "baseline")
    parts["allocator"] = int(variable * (ALLOCATOR_FACTOR - 1))
    parts["total"] = sum(parts.values())
    return parts


# ------------------------------------------------------------------------------------------- what is available
def mem_available_bytes() -> int | None:
    """MemAvailable of /proc/meminfo: what the kernel can give without swapping (None without /proc)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def local_processes() -> int:
    """Training processes on this host (torchrun / accelerate export LOCAL_WORLD_SIZE): they share its memory."""
    return max(int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1), 1)


def measured_budget(device) -> tuple[int, str]:
    """(bytes this process may use, where the number comes from) on `device`."""
    import torch

    if getattr(device, "type", str(device)) == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        used = torch.cuda.memory_allocated(device)
        return used + int(free * SAFETY), f"torch.cuda.mem_get_info free x {SAFETY} + allocated"
    available = mem_available_bytes()
    if available is None:
        raise MemoryDoesNotFit("train.memory: auto cannot read /proc/meminfo here; set train.memory: "
                               "{budget_gb: N} (or memory: off)")
    share = local_processes()
    where = f"MemAvailable x {SAFETY}" + (f" / {share} processes" if share > 1 else "") + " + this process's RSS"
    return resident_bytes() + int(available * SAFETY) // share, where


# --------------------------------------------------------------------------------------------------- the plan
@dataclass
class MemoryPlan:
    micro_batch_tokens: int
    gradient_checkpointing: bool
    loss_chunk_tokens: int
    estimate_bytes: int
    budget_bytes: int | None
    budget_source: str
    mode: str  # auto | budget | off
    parts: dict = field(default_factory=dict)
    # the other plans that fit the budget, in the estimate's order (what train.memory.autotune times)
    alternatives: list["MemoryPlan"] = field(default_factory=list)
    timings: list[dict] = field(default_factory=list)  # train.memory.autotune's measurements, when it ran

    @property
    def fits(self) -> bool:
        return self.budget_bytes is None or self.estimate_bytes <= self.budget_bytes

    def describe(self) -> str:
        budget = f"{self.budget_bytes / GB:.2f} GB ({self.budget_source})" if self.budget_bytes else "not checked"
        big = ", ".join(f"{k} {v / GB:.2f}" for k, v in self.parts.items() if k != "total" and v >= 0.01 * GB)
        return (f"train.memory={self.mode}: micro_batch_tokens={self.micro_batch_tokens}, gradient_checkpointing="
                f"{str(self.gradient_checkpointing).lower()}, loss_chunk_tokens={self.loss_chunk_tokens}; "
                f"estimated peak {self.estimate_bytes / GB:.2f} GB [{big}], budget {budget}")

    def to_json(self) -> dict:
        return {"micro_batch_tokens": self.micro_batch_tokens, "gradient_checkpointing": self.gradient_checkpointing,
                "loss_chunk_tokens": self.loss_chunk_tokens, "estimate_gb": round(self.estimate_bytes / GB, 3),
                "mode": self.mode,
                "budget_gb": None if self.budget_bytes is None else round(self.budget_bytes / GB, 3),
                **({"autotune": self.timings} if self.timings else {})}


def micro_batch_choices(seq_len: int, micro_batch_tokens: int, tokens_per_step: int) -> list[int]:
    """Micro-batches a step can be split into, largest first: whole rows that divide the step, at most the
    recipe's micro_batch_tokens (so the loss and gradients of a step stay those of the recipe: findap.train.loop)."""
    rows = tokens_per_step // seq_len
    return [r * seq_len for r in range(micro_batch_tokens // seq_len, 0, -1) if rows % r == 0]


SMALLEST_LOSS_CHUNK = 256  # below this the LM head's matmuls get too thin to keep their speed on CPU


def loss_chunk_choices(loss_chunk_tokens: int) -> list[int]:
    """LM-head chunks the plan may use, largest first: the recipe's, then halves of it down to 256 tokens.

    A smaller chunk costs almost nothing (the same matmul FLOPs in more, still large, pieces) and saves
    chunk x vocabulary x 8 bytes (0.4 GB per 1,024 tokens at a 49K vocabulary), so the plan shrinks it before it
    shrinks the micro-batch or turns on checkpointing."""
    choices, chunk = [loss_chunk_tokens], loss_chunk_tokens // 2
    while chunk >= SMALLEST_LOSS_CHUNK:
        choices.append(chunk)
        chunk //= 2
    return choices


def plans_that_fit(cfg, parts_for, budget: tuple[int, str]) -> list[MemoryPlan]:
    """Every micro-batch x checkpointing choice whose estimate fits `budget`, each with the largest loss chunk that
    fits, cheapest first by the estimate's rule (no checkpointing before checkpointing, larger micro-batches
    before smaller): the first is the plan `plan_memory` picks, the rest are what `train.memory.autotune` times."""
    limit, source = budget
    choices = micro_batch_choices(cfg.seq_len, cfg.micro_batch_tokens, cfg.tokens_per_step)
    chunks = loss_chunk_choices(cfg.loss_chunk_tokens)
    fitting = []
    for checkpointing in ([True] if cfg.gradient_checkpointing else [False, True]):
        for tokens in choices:
            for chunk in chunks:
                parts = parts_for(tokens, checkpointing, chunk)
                if parts["total"] <= limit:
                    fitting.append(MemoryPlan(tokens, checkpointing, chunk, parts["total"], limit, source,
                                              cfg.memory_mode, parts))
                    break
    return fitting


def plan_memory(cfg, shape: ModelShape, *, backend: str, half: bool, shards: int = 1, baseline: int = 0,
                budget: tuple[int, str] | None = None) -> MemoryPlan:
    """Pick micro-batch, checkpointing and LM-head loss chunk for `cfg` (a TrainConfig) under `budget` ((bytes,
    source)).

    memory: off keeps the recipe's values (the estimate is still computed and shown). Otherwise, cheapest first:
    the largest micro-batch without checkpointing, with the recipe's loss chunk or a smaller one (loss_chunk_choices:
    nearly free), then smaller micro-batches, then the same with checkpointing (about one more forward pass);
    `gradient_checkpointing: true` in the recipe keeps checkpointing on. Nothing fits: an error naming the fields
    to change.
    """
    mode = cfg.memory_mode

    def parts_for(tokens: int, checkpointing: bool, chunk: int) -> dict:
        return estimate(shape, micro_batch_tokens=tokens, seq_len=cfg.seq_len, checkpointing=checkpointing,
                        loss_chunk_tokens=chunk, backend=backend, half=half, shards=shards, baseline=baseline)

    if mode == "off":
        parts = parts_for(cfg.micro_batch_tokens, cfg.gradient_checkpointing, cfg.loss_chunk_tokens)
        return MemoryPlan(cfg.micro_batch_tokens, cfg.gradient_checkpointing, cfg.loss_chunk_tokens, parts["total"],
                          None, "", mode, parts)
    fitting = plans_that_fit(cfg, parts_for, budget)
    if fitting:
        fitting[0].alternatives = fitting[1:]
        return fitting[0]
    limit, source = budget
    choices = micro_batch_choices(cfg.seq_len, cfg.micro_batch_tokens, cfg.tokens_per_step)
    chunks = loss_chunk_choices(cfg.loss_chunk_tokens)
    smallest = parts_for(choices[-1], True, chunks[-1])
    plan = MemoryPlan(choices[-1], True, chunks[-1], smallest["total"], limit, source, mode, smallest)
    raise MemoryDoesNotFit(
        f"training does not fit in memory, even with one {cfg.seq_len}-token row per micro-batch and activation "
        f"checkpointing: {plan.describe()}. Lower train.seq_len or train.loss_chunk_tokens, use train.finetune: "
        f"lora, shard over more processes (train.sharding: full_shard), or give more memory "
        f"(train.memory: {{budget_gb: N}}, or memory: off to train as given anyway)")
