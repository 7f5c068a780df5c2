"""Atomic, resumable training checkpoints.

Layout under a checkpoint root:

    ckpt-000040/            model.safetensors, optimizer.pt, scheduler.pt, rng.pt, state.json
    LATEST                  the name of the newest complete checkpoint (written last, atomically)

A checkpoint is written into a hidden temp directory, every file fsynced, then renamed into place, and only then
does LATEST move to it; a kill at any moment leaves either the previous checkpoint or the new one, never half of
one. Optimizer/scheduler/RNG states hold only tensors and numbers and are read with `weights_only=True`.

Under FSDP (findap.train.distributed) every rank calls the save functions: the full model and optimizer states are
gathered to rank 0's CPU memory (torch.distributed.checkpoint.state_dict, full_state_dict + cpu_offload) and rank 0
writes the same files a single process writes (weights through a plain copy of the model, the optimizer state
with integer parameter keys, as `optimizer.state_dict()`). Loading reads them on rank 0 and broadcasts each rank
its shards. So a checkpoint moves freely between a single-process and a sharded run.

Shared by both training stages: the align stage (findap.align.loop) writes the same checkpoints, with
`trainable_only=True` (only parameters that require grad: with LoRA the adapters, not the frozen base) and its
own step counter (`step=`). `save_model_dir` writes the final Hugging Face model directory of either stage.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, load_model, save_file, save_model

from findap.io import write_text
from findap.train.distributed import is_sharded

LATEST = "LATEST"
FORMAT_KEY = "findap_weights"  # safetensors metadata: "trainable" marks a trainable-only file


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for f in path.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    _fsync_dir(path)


def trainable_state(model) -> dict[str, torch.Tensor]:
    """The parameters that require grad (a tied tensor once), detached, on the CPU."""
    return {n: p.detach().contiguous().cpu() for n, p in model.named_parameters() if p.requires_grad}


def save_weights(model, path: Path, *, trainable_only: bool = False) -> None:
    """Model weights as safetensors (tied tensors stored once). `model` is unsharded: see `full_model`.

    `trainable_only` stores only the parameters that require grad and marks the file so; `load_weights` then
    restores exactly those and leaves the rest of the model (the frozen base under LoRA) as it was built.
    """
    if trainable_only:
        save_file(trainable_state(model), str(path), metadata={FORMAT_KEY: "trainable"})
    else:
        save_model(model, str(path))


def _is_trainable_only(path: Path) -> bool:
    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get(FORMAT_KEY) == "trainable"


def _load_trainable(model, path: Path) -> None:
    weights = load_file(str(path))
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    _require_same_names(path, "trainable weights do not match the model's trainable parameters", params, weights)
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)


def load_weights(model, path: Path) -> None:
    """Load a safetensors file into `model`; under FSDP every rank calls it and rank 0 reads the file."""
    if is_sharded(model):
        return _load_sharded_weights(model, path)
    if _is_trainable_only(path):
        return _load_trainable(model, path)
    missing, unexpected = load_model(model, str(path), strict=False)
    _report_mismatch(path, "checkpoint does not match the model", missing, unexpected)


def _require_same_names(path: Path, what: str, expected, found) -> None:
    _report_mismatch(path, what, sorted(set(expected) - set(found)), sorted(set(found) - set(expected)))


def _report_mismatch(path: Path, what: str, missing, unexpected) -> None:
    if missing or unexpected:
        raise RuntimeError(f"{path}: {what} (missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]})")


def _rank() -> int:
    import torch.distributed as td

    return td.get_rank() if td.is_available() and td.is_initialized() else 0


def _full_options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def full_model(model):
    """The model with its full weights on rank 0 (None on other ranks): what the save functions write.

    Unsharded: `model` itself. FSDP: a collective, every rank must call it. The full state dict is gathered to
    rank 0's CPU memory and assigned (no second copy) to a plain instance of the model's class built on the meta
    device; tied weights are re-tied, so `save_weights` / `save_pretrained` write exactly the single-process files.
    """
    if not is_sharded(model):
        return model if _rank() == 0 else None
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    from torch.distributed.fsdp import FSDPModule

    state = get_model_state_dict(model, options=_full_options(cpu_offload=True))
    if _rank() != 0:
        return None
    cls = next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))  # FSDP's class swap undone
    with torch.device("meta"):
        plain = cls(copy.deepcopy(model.config))
    plain.load_state_dict(state, assign=True, strict=False)
    for name, buf in model.named_buffers():  # non-persistent buffers (rotary frequencies) are not in the state
        owner, _, leaf = name.rpartition(".")
        plain.get_submodule(owner)._buffers[leaf] = buf.detach().to("cpu", copy=True)
    if hasattr(plain, "tie_weights"):
        plain.tie_weights()
    left = [n for n, t in [*plain.named_parameters(), *plain.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"gathering the sharded model: no full tensor for {left[:5]}")
    return plain.train(model.training)


def save_model_dir(model, tokenizer, target: Path, *, merge_in_place: bool = False) -> Path:
    """Write a Hugging Face model directory atomically: weights (safetensors), config, tokenizer + chat template.

    LoRA adapters are merged into a copy of the weights, so training can go on (the align stage saves its best
    model mid-run); `merge_in_place=True` merges into `model` itself instead, no second copy, for a final save
    after which the model is not trained further. The saved config has `use_cache` on (inference default); the
    model's own config is left as it was. With several processes every rank calls it (an FSDP model is gathered
    to rank 0); rank 0 writes.
    """
    target = Path(target)
    full = full_model(model)
    if full is None:
        return target
    if hasattr(full, "merge_and_unload"):
        full = (full if merge_in_place or full is not model else copy.deepcopy(full)).merge_and_unload()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    use_cache = full.config.use_cache
    full.config.use_cache = True
    try:
        full.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        full.config.use_cache = use_cache
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


def _tied_names(model) -> list[list[str]]:
    """Groups of parameter names that share one tensor (e.g. lm_head.weight and model.embed_tokens.weight)."""
    groups: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def _load_sharded_weights(model, path: Path) -> None:
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    state = {}
    if _rank() == 0:
        if _is_trainable_only(path):
            raise RuntimeError(f"{path}: a trainable-only checkpoint cannot be loaded into a sharded model")
        state = load_file(str(path))
        for names in _tied_names(model):  # the file stores a tied tensor once (save_model)
            present = [n for n in names if n in state]
            for n in names:
                if present and n not in state:
                    state[n] = state[present[0]]
        _require_same_names(path, "checkpoint does not match the model", model.state_dict(), state)
    set_model_state_dict(model, state, options=_full_options(broadcast_from_rank0=True))


def _optimizer_state(model, optimizer) -> dict | None:
    """`optimizer.state_dict()` (integer parameter keys); under FSDP gathered full to rank 0, None elsewhere."""
    if not is_sharded(model):
        return optimizer.state_dict()
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    full = get_optimizer_state_dict(model, optimizer, options=_full_options(cpu_offload=True))
    if _rank() != 0:
        return None
    index: dict[str, int] = {}  # the name-keyed state of torch.distributed.checkpoint -> optimizer.state_dict()
    groups = []
    for group in full["param_groups"]:
        groups.append({**group, "params": [index.setdefault(n, len(index)) for n in group["params"]]})
    return {"state": {index[n]: s for n, s in full["state"].items()}, "param_groups": groups}


def _load_optimizer_state(model, optimizer, path: Path) -> None:
    # The update kernel belongs to this process, not to the file: a fused (plain tensors) checkpoint resumed on
    # FSDP shards keeps foreach, and the other way round (findap.train.optim.adamw_kernel).
    kernels = [{k: g[k] for k in ("foreach", "fused") if k in g} for g in optimizer.param_groups]
    _load_optimizer_file(model, optimizer, path)
    for group, kernel in zip(optimizer.param_groups, kernels):
        group.update(kernel)
        if group.get("fused") or group.get("capturable"):
            # Optimizer.load_state_dict places `step` by the SAVED group's flags (torch/optim/optimizer.py
            # _process_value_according_to_param_policy): a foreach (FSDP) checkpoint leaves it a CPU scalar, but a
            # fused/capturable CUDA update keeps `step` as a float32 tensor on the parameter's device, as its own
            # _init_group creates it. Move it there.
            for param in group["params"]:
                step = optimizer.state.get(param, {}).get("step")
                if torch.is_tensor(step) and (step.device != param.device or step.dtype != torch.float32):
                    optimizer.state[param]["step"] = step.to(device=param.device, dtype=torch.float32)


def _load_optimizer_file(model, optimizer, path: Path) -> None:
    if not is_sharded(model):
        # map_location="cpu": the file holds rank 0's CUDA tensors (cuda:0); without it every rank of a replicated
        # (LoRA) run would first materialise them on GPU 0. load_state_dict moves them to each parameter's device.
        optimizer.load_state_dict(torch.load(path, weights_only=True, map_location="cpu"))
        return
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    full = {}
    if _rank() == 0:
        saved = torch.load(path, weights_only=True, map_location="cpu")
        names = {id(p): n for n, p in model.named_parameters()}
        order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
        if len(order) != sum(len(g["params"]) for g in saved["param_groups"]):
            raise RuntimeError(f"{path}: optimizer state does not match the model's parameters")
        full = {"state": {order[i]: s for i, s in saved["state"].items()},
                "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in saved["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, full, options=_full_options(broadcast_from_rank0=True))


def save_checkpoint(root: Path, model, optimizer, scheduler, state: dict, *, keep: int = 1, step: int | None = None,
                    trainable_only: bool = False) -> Path | None:
    """Write a complete checkpoint atomically and point LATEST at it; keep the `keep` newest ones.

    The directory is named after `step` (default `state["global_step"]`); `state` must be JSON. `trainable_only`:
    see `save_weights` (single-process models only). With several processes every rank calls it; rank 0 writes
    (and returns the path), the others return None.
    """
    if trainable_only and is_sharded(model):
        raise ValueError("trainable_only checkpoints are single-process only (FSDP saves the full model)")
    optimizer_state = _optimizer_state(model, optimizer)
    model = full_model(model)
    if model is None:
        return None
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{state['global_step'] if step is None else step:06d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}-"))
    save_weights(model, tmp / "model.safetensors", trainable_only=trainable_only)
    torch.save(optimizer_state, tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save({"torch": torch.get_rng_state()}, tmp / "rng.pt")
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    _fsync_tree(tmp)
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    write_text(root / LATEST, name)
    old = sorted(p for p in root.glob("ckpt-*") if p.name != name)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    for p in root.glob(".ckpt-*"):  # temp dirs of killed writes
        shutil.rmtree(p, ignore_errors=True)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    pointer = Path(root) / LATEST
    if not pointer.exists():
        return None
    path = Path(root) / pointer.read_text().strip()
    return path if (path / "state.json").exists() else None


def load_checkpoint(path: Path, model, optimizer, scheduler) -> dict:
    """Restore model (all or, from a trainable-only file, the trainable weights), optimizer, scheduler and RNG
    from `path`; return its training state."""
    path = Path(path)
    load_weights(model, path / "model.safetensors")
    _load_optimizer_state(model, optimizer, path / "optimizer.pt")
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    torch.set_rng_state(torch.load(path / "rng.pt", weights_only=True)["torch"])
    return json.loads((path / "state.json").read_text())
