"""The checkpoint format of both trainers: atomic, resumable, the same files whatever the process layout.

Layout under a checkpoint root:

    ckpt-000040/            model.safetensors, optimizer.pt, scheduler.pt, rng.pt, state.json
    LATEST                  the name of the newest complete checkpoint (written last, atomically)

A checkpoint is written into a hidden temp directory, every file fsynced, then renamed into place, and only then
does LATEST move to it; a kill at any moment leaves either the previous checkpoint or the new one, never half of
one. Optimizer/scheduler/RNG states hold only tensors and numbers and are read with `weights_only=True`.
`state.json` is the loop's `findap.training.state.TrainingState`.

`trainable_only` checkpoints (alignment with LoRA: the adapters, not the frozen base) store only the parameters
that require grad and mark the file so. Under FSDP (findap.training.parallel.FullyShard) the full model and
optimizer states are gathered to rank 0's CPU memory (torch.distributed.checkpoint.state_dict, full_state_dict +
cpu_offload) and rank 0 writes the files a single process writes (the optimizer state with integer parameter
keys, as `optimizer.state_dict()`); loading reads them on rank 0 and broadcasts each rank its shards.
`save_model_dir` writes the final Hugging Face model directory of either stage.
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

LATEST = "LATEST"
FORMAT_KEY = "findap_weights"  # safetensors metadata: "trainable" marks a trainable-only file


# ---- files -------------------------------------------------------------------------------------------------
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
    """Model weights as safetensors (tied tensors stored once); `model` holds full (unsharded) weights."""
    if trainable_only:
        save_file(trainable_state(model), str(path), metadata={FORMAT_KEY: "trainable"})
    else:
        save_model(model, str(path))


def save_weights_atomic(model, path: Path) -> None:
    """`save_weights` into a temp file, then renamed over `path` (a kill leaves the previous file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".tmp-" + path.name)
    save_weights(model, tmp)
    tmp.replace(path)


def _is_trainable_only(path: Path) -> bool:
    with safe_open(str(path), framework="pt") as f:
        return (f.metadata() or {}).get(FORMAT_KEY) == "trainable"


def load_weights(model, path: Path) -> None:
    """Load a safetensors file into an unsharded model (all weights, or the trainable ones of a trainable-only
    file; the rest of the model is left as it was built)."""
    if _is_trainable_only(path):
        weights = load_file(str(path))
        params = {n: p for n, p in model.named_parameters() if p.requires_grad}
        _require_same_names(path, "trainable weights do not match the model's trainable parameters", params,
                            weights)
        with torch.no_grad():
            for name, value in weights.items():
                params[name].copy_(value)
        return
    missing, unexpected = load_model(model, str(path), strict=False)
    _report_mismatch(path, "checkpoint does not match the model", missing, unexpected)


def _require_same_names(path: Path, what: str, expected, found) -> None:
    _report_mismatch(path, what, sorted(set(expected) - set(found)), sorted(set(found) - set(expected)))


def _report_mismatch(path: Path, what: str, missing, unexpected) -> None:
    if missing or unexpected:
        raise RuntimeError(f"{path}: {what} (missing {list(missing)[:5]}, unexpected {list(unexpected)[:5]})")


def write_checkpoint(root: Path, model, optimizer_state: dict, scheduler, state: dict, *, step: int,
                     keep: int = 1, trainable_only: bool = False) -> Path:
    """Write ckpt-<step>/ atomically from full weights and point LATEST at it; keep the `keep` newest ones."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{step:06d}"
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


def read_optimizer_state(path: Path) -> dict:
    # map_location="cpu": the file holds rank 0's CUDA tensors (cuda:0); without it every rank of a replicated
    # (LoRA) run would first materialise them on GPU 0. load_state_dict moves them to each parameter's device.
    return torch.load(path, weights_only=True, map_location="cpu")


def restore_kernels(optimizer, kernels: list[dict]) -> None:
    """Put back this process's AdamW kernel flags after `load_state_dict` took the file's."""
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


def read_rest(path: Path, scheduler) -> dict:
    """Restore the scheduler and the RNG from checkpoint `path`; its state.json."""
    path = Path(path)
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    torch.set_rng_state(torch.load(path / "rng.pt", weights_only=True)["torch"])
    return json.loads((path / "state.json").read_text())


def save_model_dir(model, tokenizer, target: Path, *, merge_in_place: bool = False) -> Path:
    """Write a Hugging Face model directory atomically: weights (safetensors), config, tokenizer + chat template.

    LoRA adapters are merged into a copy of the weights, so training can go on (the align stage saves its best
    model mid-run); `merge_in_place=True` merges into `model` itself instead, no second copy, for a final save
    after which the model is not trained further. The saved config has `use_cache` on (inference default); the
    model's own config is left as it was. `model` holds full weights: see findap.training.parallel.
    """
    target = Path(target)
    if hasattr(model, "merge_and_unload"):
        model = (model if merge_in_place else copy.deepcopy(model)).merge_and_unload()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    use_cache = model.config.use_cache
    model.config.use_cache = True
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        model.config.use_cache = use_cache
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
    return target


# ---- FSDP: gather to rank 0, broadcast from rank 0 (every rank calls these) -------------------------------
def _full_options(**kw):
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kw)


def gather_full_model(model, writer: bool):
    """A plain (unsharded) copy of an FSDP model with its full weights in the writing rank; None elsewhere."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    from torch.distributed.fsdp import FSDPModule

    state = get_model_state_dict(model, options=_full_options(cpu_offload=True))
    if not writer:
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


def _tied_names(model) -> list[list[str]]:
    """Groups of parameter names that share one tensor (e.g. lm_head.weight and model.embed_tokens.weight)."""
    groups: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        groups.setdefault(id(p), []).append(name)
    return [names for names in groups.values() if len(names) > 1]


def load_sharded_weights(model, path: Path, reader: bool) -> None:
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    state = {}
    if reader:
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


def gather_optimizer_state(model, optimizer, writer: bool) -> dict | None:
    """`optimizer.state_dict()` layout (integer parameter keys) of a sharded model's optimizer, in the writer."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    full = get_optimizer_state_dict(model, optimizer, options=_full_options(cpu_offload=True))
    if not writer:
        return None
    index: dict[str, int] = {}  # the name-keyed state of torch.distributed.checkpoint -> optimizer.state_dict()
    groups = []
    for group in full["param_groups"]:
        groups.append({**group, "params": [index.setdefault(n, len(index)) for n in group["params"]]})
    return {"state": {index[n]: s for n, s in full["state"].items()}, "param_groups": groups}


def load_sharded_optimizer_state(model, optimizer, path: Path, reader: bool) -> None:
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    full = {}
    if reader:
        saved = read_optimizer_state(path)
        names = {id(p): n for n, p in model.named_parameters()}
        order = [names[id(p)] for group in optimizer.param_groups for p in group["params"]]
        if len(order) != sum(len(g["params"]) for g in saved["param_groups"]):
            raise RuntimeError(f"{path}: optimizer state does not match the model's parameters")
        full = {"state": {order[i]: s for i, s in saved["state"].items()},
                "param_groups": [{**g, "params": [order[i] for i in g["params"]]} for g in saved["param_groups"]]}
    set_optimizer_state_dict(model, optimizer, full, options=_full_options(broadcast_from_rank0=True))
