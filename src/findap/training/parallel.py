"""Training in one process or across processes (torchrun / accelerate launch), behind one interface.

`start(sharding, finetune)` reads the launcher's environment once and returns the implementation; the rank is
known only through it. The loops call the same methods whatever the layout, and hold no rank branches:

- `SingleProcess`: one process; every method is the plain single-process operation.
- `Replicated` (train.sharding: none, and LoRA): every rank holds a full replica; micro-batch i of a step runs on
  rank i % world; gradients are summed in one flat all-reduce after the local passes.
- `FullyShard` (train.sharding: full_shard / auto for full fine-tuning): FSDP2 `fully_shard`, one unit per
  decoder layer plus the root (embeddings, final norm, tied LM head). Parameters, gradients and AdamW state are
  DTensor shards (about 1/world of the model per rank); a unit's weights are all-gathered just before its
  forward, freed after it (reshard_after_forward=True), gathered again for its backward, and the gradients are
  reduce-scattered. Collectives need every rank to run the same number of passes, so when the micro-batches of
  a step do not divide evenly the short ranks add a zero-weight pass. Reductions SUM gradients (FSDP's default
  divides by world): each rank backpropagates token-loss sum / tokens of the whole step, exactly as one process
  accumulating all micro-batches would. Activation checkpointing (`train.gradient_checkpointing`, or
  `fsdp_activation_checkpointing: true` in the accelerate config) composes with it. On GPU with bf16, FSDP's
  MixedPrecisionPolicy gathers bf16 weights and reduces fp32 gradients, keeping fp32 master weights in the shards.

Every rank builds the same step plan from the same seed, so the loss denominator of a step is known everywhere
without communication; token-loss sums are all-reduced, so the loss of a step is identical to one process.
Every rank measures the dev loss and FinEval scores itself; decisions read rank 0's numbers on every rank
(`same_on_all_ranks`), so ranks never disagree about a collective save or a stop. Checkpoints, the best weights
and the final model directory are gathered to rank 0 and written in the single-process format
(findap.training.checkpoint), so a checkpoint moves freely between layouts. Tested with 2 CPU processes over gloo:
same losses, gradient norms and weights as one process.

Why `fully_shard` and not `accelerate.prepare`: findap runs its own loop (packing, loss normalisation over the
whole step, the chunked LM-head loss, resumable single-file checkpoints), and prepare() would wrap the model in a
layer we would then have to work around at each of those points. accelerate remains the launcher: `accelerate
launch` starts one process per device with the same RANK/WORLD_SIZE/LOCAL_RANK/MASTER_ADDR environment as
torchrun, which `start` reads.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import torch

from findap.training import checkpoint as ckpt
from findap.training.lora import base_model


def launched_world() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def use_full_shard(sharding: str, finetune: str, world: int) -> bool:
    """Whether parameters are sharded in a run of `world` processes (never in one process; LoRA keeps replicas,
    and TrainConfig refuses sharding=full_shard with it)."""
    return sharding != "none" and world > 1 and finetune != "lora"


def start(sharding: str = "none", finetune: str = "full") -> "SingleProcess":
    """The parallel layout the launcher describes (WORLD_SIZE/RANK/MASTER_ADDR); one process: SingleProcess.

    On CUDA each process takes GPU LOCAL_RANK, and the group gets NCCL for CUDA tensors and gloo for CPU ones (the
    loops all-reduce CPU loss sums). Call it before anything touches CUDA.
    """
    world = launched_world()
    if world == 1:
        return SingleProcess()
    import torch.distributed as td

    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    if not td.is_initialized():
        td.init_process_group("cuda:nccl,cpu:gloo" if torch.cuda.is_available() else "gloo")
    layout = FullyShard if use_full_shard(sharding, finetune, world) else Replicated
    return layout(td.get_rank(), td.get_world_size())


class SingleProcess:
    """One process: the reference every other layout reproduces."""

    rank, world = 0, 1

    @property
    def is_main(self) -> bool:
        """The process that writes files and logs (rank 0)."""
        return self.rank == 0

    # ---- setup ---------------------------------------------------------------------------------------------
    def device(self, device: torch.device) -> torch.device:
        """This process's device."""
        return device

    def wrap(self, model, *, device, precision: str = "auto", checkpointing: bool = False):
        """The model as this layout trains it (before the optimizer is built)."""
        return model

    # ---- a training step -----------------------------------------------------------------------------------
    def local_passes(self, n_batches: int) -> list[tuple[int, float]]:
        """(micro-batch index, loss weight) pairs this process runs in a step of `n_batches` micro-batches."""
        return [(i, 1.0) for i in range(n_batches)]

    def run_as_forward(self, model, fn, *args, **kwargs):
        """fn(model, *args, **kwargs) as one forward of the whole model (FSDP: the root unit's weights gathered)."""
        return fn(model, *args, **kwargs)

    def finish_step(self, model, loss_total: torch.Tensor) -> None:
        """After the local passes: the step's loss sum (in place) and gradients over all processes."""

    def clip_gradients(self, model, max_norm: float) -> torch.Tensor:
        """Clip to the global gradient norm and return the norm before clipping (0 when `max_norm` is 0).

        With FSDP the gradients are DTensor shards: the norm of each is partial, and `full_tensor()` sums the
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

    # ---- agreement -----------------------------------------------------------------------------------------
    def same_on_all_ranks(self, values: dict) -> dict:
        """Rank 0's `values` (numbers, as Python floats) on every rank."""
        return dict(values)

    def rank0_tokens(self, tokens: list[int]) -> list[int]:
        """Rank 0's token ids on every rank (decoding a sharded model in lockstep)."""
        return list(tokens)

    def barrier(self) -> None:
        """Wait until every process gets here."""

    def on_main(self, fn, *args, **kwargs):
        """fn(*args, **kwargs) in the writing process only (files every rank would otherwise write alike)."""
        return fn(*args, **kwargs)

    # ---- weights and checkpoints ---------------------------------------------------------------------------
    def full_model(self, model):
        """The model with its full weights in the writing process (None elsewhere)."""
        return model

    def optimizer_state(self, model, optimizer) -> dict | None:
        return optimizer.state_dict()

    def load_weights(self, model, path: Path) -> None:
        ckpt.load_weights(model, path)

    def load_optimizer_state(self, model, optimizer, path: Path) -> None:
        optimizer.load_state_dict(ckpt.read_optimizer_state(path))

    def save_checkpoint(self, root: Path, model, optimizer, scheduler, state, *, keep: int = 1,
                        trainable_only: bool = False) -> Path | None:
        """Every process calls it; the writing one writes ckpt-<state.step>/ and returns its path."""
        optimizer_state = self.optimizer_state(model, optimizer)
        full = self.full_model(model)
        if full is None:
            return None
        return ckpt.write_checkpoint(root, full, optimizer_state, scheduler, state.to_json(), step=state.step,
                                     keep=keep, trainable_only=trainable_only)

    def load_checkpoint(self, path: Path, model, optimizer, scheduler) -> dict:
        """Restore model, optimizer, scheduler and RNG from checkpoint `path`; its state.json."""
        self.load_weights(model, Path(path) / "model.safetensors")
        self.restore_optimizer(model, optimizer, Path(path) / "optimizer.pt")
        return ckpt.read_rest(path, scheduler)

    def restore_optimizer(self, model, optimizer, path: Path) -> None:
        """Load an optimizer file. The update kernel belongs to this process, not to the file: a fused (plain
        tensors) checkpoint resumed on FSDP shards keeps foreach, and the other way round
        (findap.training.optim.adamw_kernel)."""
        kernels = [{k: g[k] for k in ("foreach", "fused") if k in g} for g in optimizer.param_groups]
        self.load_optimizer_state(model, optimizer, path)
        ckpt.restore_kernels(optimizer, kernels)

    def save_weights(self, model, path: Path) -> None:
        """Every process calls it; the writing one replaces `path` atomically (a kill leaves the previous file)."""
        full = self.full_model(model)
        if full is not None:
            ckpt.save_weights_atomic(full, path)

    def save_model_dir(self, model, tokenizer, target: Path, *, merge_in_place: bool = False) -> Path:
        """Every process calls it; the writing one writes the Hugging Face model directory."""
        full = self.full_model(model)
        if full is not None:
            ckpt.save_model_dir(full, tokenizer, target, merge_in_place=merge_in_place or full is not model)
        return Path(target)

    # ---- scoring the live model ----------------------------------------------------------------------------
    @contextlib.contextmanager
    def output_dir(self, target: Path):
        """`target` for the writing process; a temporary folder elsewhere (removed afterwards)."""
        yield Path(target)

    def run_inference(self, model, run):
        """run(model) for an engine that calls the model in its own way (generation, option scoring)."""
        with torch.no_grad():
            return run(model)


class Replicated(SingleProcess):
    """Several processes, each with a full replica; gradients summed in one flat all-reduce."""

    def __init__(self, rank: int, world: int):
        self.rank, self.world = rank, world

    def device(self, device: torch.device) -> torch.device:
        """GPU LOCAL_RANK, explicitly: an explicit other index (e.g. `device: cuda:0`) would put every rank on one
        GPU, which NCCL rejects, so it is refused."""
        if device.type != "cuda":
            return device
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if device.index is not None and device.index != local:
            raise ValueError(f"device {device} in a multi-process run: each process uses GPU LOCAL_RANK={local}; "
                             "set device to auto or cuda")
        return torch.device("cuda", local)

    def local_passes(self, n_batches: int) -> list[tuple[int, float]]:
        return [(i, 1.0) for i in range(self.rank, n_batches, self.world)]

    def finish_step(self, model, loss_total: torch.Tensor) -> None:
        self._sum_gradients(model)
        self._all_reduce(loss_total)

    def _sum_gradients(self, model) -> None:
        """Sum the gradients of all ranks in one flat all-reduce (a rank with no micro-batch contributes zeros)."""
        params = [p for p in model.parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = torch.cat([g.reshape(-1) for g in grads])
        self._all_reduce(flat)
        offset = 0
        for p in params:
            n = p.numel()
            p.grad = flat[offset:offset + n].view_as(p).clone()
            offset += n

    @staticmethod
    def _all_reduce(tensor: torch.Tensor) -> None:
        import torch.distributed as td

        td.all_reduce(tensor)

    def same_on_all_ranks(self, values: dict) -> dict:
        """One all-reduce of rank 0's values and the others' zeros (x + 0 is exact, NaN stays NaN). A last-digit
        difference between ranks must not let one rank save `best/` or stop where another does not. The keys must
        be the same on every rank, in the same order (they come from the config and the data)."""
        if not values:
            return {}
        keys = list(values)
        return dict(zip(keys, self._rank0_numbers([float(values[k]) for k in keys], torch.float64)))

    def rank0_tokens(self, tokens: list[int]) -> list[int]:
        return [int(t) for t in self._rank0_numbers(tokens, torch.int64)]

    def _rank0_numbers(self, numbers: list, dtype: torch.dtype) -> list:
        # a CPU tensor, like the loops' loss sums: gloo in a CPU group, the group's CPU backend under NCCL
        values = torch.tensor(numbers, dtype=dtype)
        if not self.is_main:
            values.zero_()  # not a multiplication by 0: NaN * 0 is NaN
        self._all_reduce(values)
        return values.tolist()

    def barrier(self) -> None:
        import torch.distributed as td

        td.barrier()

    def full_model(self, model):
        return model if self.is_main else None

    def on_main(self, fn, *args, **kwargs):
        return fn(*args, **kwargs) if self.is_main else None

    @contextlib.contextmanager
    def output_dir(self, target: Path):
        if self.is_main:
            yield Path(target)
            return
        with tempfile.TemporaryDirectory(prefix="findap-rank-") as scratch:
            yield Path(scratch)


class FullyShard(Replicated):
    """FSDP2 FULL_SHARD over all ranks (see the module docstring)."""

    def wrap(self, model, *, device, precision: str = "auto", checkpointing: bool = False):
        # fully_shard directly, not accelerate.prepare(): our own loop needs the units, the root forward of the
        # chunked loss and the gradient SUM set up exactly as below.
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard

        from findap.models import autocast_dtype, pick_device

        device = pick_device(device)
        mesh = init_device_mesh(device.type, (self.world,))
        mp = MixedPrecisionPolicy()
        if device.type == "cuda" and autocast_dtype(device, precision, training=True) == torch.bfloat16:
            mp = MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
        base = base_model(model)
        # accelerate launch exports its config's fsdp_activation_checkpointing as FSDP_ACTIVATION_CHECKPOINTING
        if checkpointing or os.environ.get("FSDP_ACTIVATION_CHECKPOINTING", "").lower() == "true":
            set_checkpointing(base, True)  # idempotent when the stage already enabled it
        for layer in base.get_decoder().layers:
            fully_shard(layer, mesh=mesh, reshard_after_forward=True, mp_policy=mp)
        # The root unit holds what no layer owns: embeddings, final norm and the LM head (tied to the embeddings in
        # SmolLM2: one parameter, one shard). FULL_SHARD for it too.
        fully_shard(model, mesh=mesh, reshard_after_forward=True, mp_policy=mp)
        for unit in model.modules():
            if isinstance(unit, FSDPModule):
                unit.set_gradient_divide_factor(1.0)  # SUM over ranks: the loss is already normalised by the step
                unit.set_force_sum_reduction_for_comms(True)  # plain SUM collectives (gloo has no PreMulSum)
        # A rank whose micro-batches train no token of a unit still joins that unit's reduce-scatter (with zeros).
        model.set_reduce_scatter_unused_params(True)
        return model

    def local_passes(self, n_batches: int) -> list[tuple[int, float]]:
        """Every rank makes ceil(n / world) passes (collectives); the short ranks pad with a zero-weight pass over
        the step's last micro-batch."""
        mine = super().local_passes(n_batches)
        if n_batches:
            mine += [(n_batches - 1, 0.0)] * (-(-n_batches // self.world) - len(mine))
        return mine

    def run_as_forward(self, model, fn, *args, **kwargs):
        """FSDP gathers the root's weights in the hooks of `model.forward` only. The chunked loss runs the decoder
        and then reads `lm_head.weight` itself, and the eval engine reads the embeddings and LM head when it
        scores options, so they run between the root's pre- and post-forward hooks: the embedding and tied LM
        head are full tensors throughout and again in the backward. These are the two calls torch's own
        `register_fsdp_forward_method` wraps around a method; calling them here attaches nothing to the model
        (that public function would patch the model instance instead). They are private names: a torch release
        that renames them is caught here, with the fix named, and by the 2-process FSDP test."""
        fsdp_state = model._get_fsdp_state()
        if not (hasattr(fsdp_state, "_pre_forward") and hasattr(fsdp_state, "_post_forward")):
            raise RuntimeError(f"torch {torch.__version__}: FSDP's state has no _pre_forward/_post_forward (read by "
                               "findap.training.parallel.FullyShard.run_as_forward); pin torch==2.13.0 or update "
                               "run_as_forward to this release's forward-method hooks")
        args, kwargs = fsdp_state._pre_forward(model, args, kwargs)
        out = fn(model, *args, **kwargs)
        return fsdp_state._post_forward(model, args, out)

    def finish_step(self, model, loss_total: torch.Tensor) -> None:
        self._all_reduce(loss_total)  # FSDP has already reduce-scattered the gradients during backward

    def full_model(self, model):
        """The full state dict gathered to rank 0's CPU memory, assigned (no second copy) to a plain instance of
        the model's class built on the meta device; tied weights re-tied. A collective: every rank calls it."""
        return ckpt.gather_full_model(model, self.is_main)

    def optimizer_state(self, model, optimizer) -> dict | None:
        return ckpt.gather_optimizer_state(model, optimizer, self.is_main)

    def load_weights(self, model, path: Path) -> None:
        ckpt.load_sharded_weights(model, path, self.is_main)

    def load_optimizer_state(self, model, optimizer, path: Path) -> None:
        ckpt.load_sharded_optimizer_state(model, optimizer, path, self.is_main)

    def save_checkpoint(self, root: Path, model, optimizer, scheduler, state, *, keep: int = 1,
                        trainable_only: bool = False) -> Path | None:
        if trainable_only:
            raise ValueError("trainable_only checkpoints are not written from a sharded model (FSDP saves the full "
                             "model)")
        return super().save_checkpoint(root, model, optimizer, scheduler, state, keep=keep)

    def run_inference(self, model, run):
        """Every rank runs the same forwards (all ranks score the same items in the same batches), inside the
        root's forward hooks, with the root unit kept gathered until the end, also across the engine's own
        `model(...)` calls (generation), which would otherwise free it after each. Each decoder layer is gathered
        and freed by its own hooks."""
        model.set_reshard_after_forward(False, recurse=False)  # the root only; layers still free after forward
        try:
            with torch.no_grad():
                return self.run_as_forward(model, lambda m: run(m))
        finally:
            model.set_reshard_after_forward(True, recurse=False)  # as wrap sets it
            model.reshard()  # the root back to its shards: training goes on exactly as before


def set_checkpointing(model, on: bool) -> None:
    """Activation checkpointing of a transformers model (a LoRA model: its base) on or off; non-reentrant, so
    frozen inputs still pass gradients. transformers 5 renamed the methods; the old names warn."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    if on:
        enable = getattr(base, "activation_checkpointing_enable", None)
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            base.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        return
    disable = getattr(base, "activation_checkpointing_disable", None) or base.gradient_checkpointing_disable
    active = getattr(base, "is_activation_checkpointing", None)
    if (active if active is not None else base.is_gradient_checkpointing):
        disable()
