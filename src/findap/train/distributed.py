"""Training across processes (torchrun / accelerate launch): data parallel, parameters sharded with FSDP2.

Placement. Every rank builds the same step plan from the same seed, so the trained-token count of a step (the loss
denominator) is known everywhere without communication. Rank r runs micro-batches r, r + world, r + 2*world, ...
of a step. Token-loss sums are all-reduced, so the loss of a step is identical to a single-process run.

Layouts (`train.sharding`):

- full_shard (the default for full fine-tuning with more than one process): FSDP2 `fully_shard`, one unit per
  decoder layer plus the root (embeddings, final norm, tied LM head). Parameters, gradients and AdamW state are
  DTensor shards (about 1/world of the model per rank); a unit's weights are all-gathered just before its
  forward, freed after it (FULL_SHARD: reshard_after_forward=True), gathered again for its backward, and the
  gradients are reduce-scattered. Collectives need every rank to run the same number of forward/backward
  passes, so when the micro-batches of a step do not divide evenly the short ranks add a zero-weight pass (one
  of the step's micro-batches again, its loss multiplied by 0). Reductions SUM gradients (FSDP's default
  divides by world): each rank backpropagates token-loss sum / tokens of the whole step, exactly as one process
  accumulating all micro-batches would. Activation checkpointing (`train.gradient_checkpointing`, or
  `fsdp_activation_checkpointing: true` in the accelerate config) composes with it: transformers checkpoints
  each layer's `forward`, non-reentrant, inside FSDP's hooks. On GPU with bf16, FSDP's
  MixedPrecisionPolicy gathers bf16 weights and reduces fp32 gradients, keeping fp32 master weights in the shards.
- none: every rank holds a full replica and gradients are summed in one flat all-reduce (`sum_gradients`);
  used for LoRA, whose trainable part is small.

Decisions: every rank measures the dev loss and FinEval scores itself; the save/stop decisions read rank 0's
numbers on every rank (`same_on_all_ranks`), so ranks can never disagree about a collective save or a stop.

Checkpoints, the best weights and the final model directory are gathered to rank 0 and written in the
single-process formats (findap.train.checkpoint). Tested with 2 CPU processes over gloo, whose torch 2.13 build
has every collective FSDP2 uses (all_gather_into_tensor, reduce_scatter_tensor, broadcast): same losses,
gradient norms and weights as one process.

Why `fully_shard` and not `accelerate.prepare`: findap runs its own loop (packing, loss normalisation over the
whole step, the chunked LM-head loss, resumable single-file checkpoints), and prepare() would wrap the model in a
layer we would then have to work around at each of those points. accelerate remains the launcher:
`accelerate launch` starts one process per device with the same RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR
environment as torchrun, which `from_env` reads.
"""
from __future__ import annotations

import os
import types

import torch

from findap.train.loss import ROOT_FORWARD, base_model


def from_env():
    """Join the process group the launcher describes (WORLD_SIZE/RANK/MASTER_ADDR); one process: no-op.

    On CUDA each process takes GPU LOCAL_RANK, and the group gets NCCL for CUDA tensors and gloo for CPU ones
    (the loop all-reduces its CPU loss sums). Call it before the model is moved to the device.
    """
    from findap.train.loop import Distributed  # loop imports this module

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Distributed()
    import torch.distributed as td

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not td.is_initialized():
        td.init_process_group("cuda:nccl,cpu:gloo" if torch.cuda.is_available() else "gloo")
    return Distributed(rank=td.get_rank(), world=td.get_world_size(), all_reduce=td.all_reduce,
                       barrier=td.barrier)


def rank_device(device: torch.device) -> torch.device:
    """This process's device. Under a multi-process launch (WORLD_SIZE > 1) on CUDA: GPU LOCAL_RANK, explicitly.

    A bare "cuda" would also land there once `from_env` has called `torch.cuda.set_device(LOCAL_RANK)`, but only
    for code that runs after it; an explicit index makes the placement independent of call order (models,
    batches, the FinEval engine). An explicit other index (e.g. `device: cuda:0` in the recipe) would put every
    rank on one GPU, which NCCL rejects, so it is refused.
    """
    if device.type != "cuda" or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if device.index is not None and device.index != local:
        raise ValueError(f"device {device} in a multi-process run: each process uses GPU LOCAL_RANK={local}; "
                         "set device to auto or cuda")
    return torch.device("cuda", local)


def use_full_shard(cfg, world: int) -> bool:
    """Whether `cfg.sharding` shards parameters in a run of `world` processes (never in one process)."""
    # LoRA keeps full replicas (TrainConfig already refuses sharding=full_shard with it)
    return cfg.sharding != "none" and world > 1 and cfg.finetune != "lora"


def is_sharded(model) -> bool:
    """True for a model wrapped by `shard_model` (FSDP2): its parameters are DTensor shards."""
    from torch.distributed.fsdp import FSDPModule

    return isinstance(model, FSDPModule)


def _root_forward(self, fn, *args, **kwargs):
    return fn(self, *args, **kwargs)


def shard_model(model, cfg, dist, device, precision: str = "auto"):
    """FSDP2 FULL_SHARD over all ranks when `cfg.sharding` asks for it (see the module docstring); else `model`.

    Must run before the optimizer is built (it replaces the parameters by their shards).
    """
    if not use_full_shard(cfg, dist.world):
        return model
    # fully_shard directly, not accelerate.prepare(): our own loop needs the units, the root forward of the
    # chunked loss and the gradient SUM set up exactly as below (see the module docstring).
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard, register_fsdp_forward_method

    from findap.models import autocast_dtype, pick_device

    device = pick_device(device)
    mesh = init_device_mesh(device.type, (dist.world,))
    mp = MixedPrecisionPolicy()
    if device.type == "cuda" and autocast_dtype(device, precision, training=True) == torch.bfloat16:
        mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
    base = base_model(model)
    # accelerate launch exports its config's fsdp_activation_checkpointing as FSDP_ACTIVATION_CHECKPOINTING
    if cfg.gradient_checkpointing or os.environ.get("FSDP_ACTIVATION_CHECKPOINTING", "").lower() == "true":
        # per layer, non-reentrant (idempotent when stage.py already enabled it)
        enable = getattr(base, "activation_checkpointing_enable", None)  # transformers >= 5.x name
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for layer in base.get_decoder().layers:
        fully_shard(layer, mesh=mesh, reshard_after_forward=True, mp_policy=mp)
    # The root unit holds what no layer owns: embeddings, final norm and the LM head (tied to the embeddings in
    # SmolLM2: one parameter, one shard). FULL_SHARD for it too: it is freed after the forward, gathered again
    # when the backward starts.
    fully_shard(model, mesh=mesh, reshard_after_forward=True, mp_policy=mp)
    for unit in model.modules():
        if isinstance(unit, FSDPModule):
            unit.set_gradient_divide_factor(1.0)  # SUM over ranks: the loss is already normalised by the step
            unit.set_force_sum_reduction_for_comms(True)  # plain SUM collectives (no NCCL PreMulSum; gloo has none)
    # A rank whose micro-batches train no token of a unit still joins that unit's reduce-scatter (with zeros).
    model.set_reduce_scatter_unused_params(True)
    # FSDP gathers the root's weights in the pre-forward hook of `model.forward` only. The chunked loss runs the
    # decoder and then reads `lm_head.weight` itself (findap.train.loss), so it runs as a registered forward
    # method of the root: `token_loss_sum` sees ROOT_FORWARD and calls it, and the embedding / tied LM head are
    # full tensors for the whole loss and again in its backward. FinEval scoring (findap.train.select) uses it too.
    setattr(model, ROOT_FORWARD, types.MethodType(_root_forward, model))
    register_fsdp_forward_method(model, ROOT_FORWARD)
    return model


def local_passes(model, n_batches: int, dist) -> list[tuple[int, float]]:
    """(micro-batch index, loss weight) pairs this rank runs in a step of `n_batches` micro-batches.

    Rank r takes r, r + world, ...; under FSDP every rank makes the same number of passes (collectives), the
    short ranks padding with a zero-weight pass over the step's last micro-batch.
    """
    mine = [(i, 1.0) for i in range(dist.rank, n_batches, dist.world)]
    if dist.world > 1 and n_batches and is_sharded(model):
        mine += [(n_batches - 1, 0.0)] * (-(-n_batches // dist.world) - len(mine))
    return mine


def finish_step(model, dist, loss_total: torch.Tensor) -> None:
    """After the local passes: sum the step's token losses over ranks (in place), and the gradients of replicas
    (FSDP has already reduce-scattered them during backward)."""
    if dist.world == 1:
        return
    if not is_sharded(model):
        sum_gradients(model, dist)
    dist.all_reduce(loss_total)


def sum_gradients(model, dist) -> None:
    """Sum the gradients of all ranks in one flat all-reduce (a rank with no micro-batch contributes zeros)."""
    if dist.world == 1:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    offset = 0
    for p in params:
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone()
        offset += n


def same_on_all_ranks(values: dict, dist) -> dict:
    """Rank 0's `values` (numbers, as Python floats) on every rank; one process: a copy of `values`.

    Every rank measures the dev loss and the FinEval scores itself, and the save/stop decisions read them: a last-
    digit difference between ranks (kernels, thread counts, reduction order) must not let one rank save `best/` or
    stop where another does not, since both are collectives under FSDP. One all-reduce of rank 0's values and the
    others' zeros (x + 0 is exact, NaN stays NaN). The keys must be the same on every rank, in the same order (they
    come from the config and the data, which all ranks share); their values may differ.
    """
    if dist is None or dist.world == 1 or not values:
        return dict(values)
    keys = list(values)
    return dict(zip(keys, _rank0_numbers([float(values[k]) for k in keys], torch.float64, dist)))


def rank0_tokens(tokens: list[int], dist) -> list[int]:
    """Rank 0's token ids on every rank (the same count everywhere): decoding a sharded model in lockstep."""
    if dist is None or dist.world == 1:
        return list(tokens)
    return [int(t) for t in _rank0_numbers(tokens, torch.int64, dist)]


def _rank0_numbers(numbers: list, dtype: torch.dtype, dist) -> list:
    # a CPU tensor, like the loop's loss sums: gloo in a CPU group, the group's CPU backend under NCCL
    values = torch.tensor(numbers, dtype=dtype)
    if dist.rank != 0:
        values.zero_()
    dist.all_reduce(values)
    return values.tolist()


def clip_gradients(model, max_norm: float) -> torch.Tensor:
    """Clip to a global gradient norm and return the norm before clipping (0 when `max_norm` is 0).

    With FSDP the gradients are DTensor shards: the norm of each is a partial value, and `full_tensor()` sums the
    squares over ranks, so every rank clips with the norm of the whole model's gradient.
    """
    if max_norm <= 0:
        return torch.tensor(0.0)
    params = [p for p in model.parameters() if p.grad is not None]
    norm = torch.nn.utils.get_total_norm([p.grad for p in params])
    if hasattr(norm, "full_tensor"):  # DTensor
        norm = norm.full_tensor()
    torch.nn.utils.clip_grads_with_norm_(params, max_norm, norm)
    return norm
