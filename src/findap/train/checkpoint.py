"""Atomic, resumable training checkpoints.

Layout under a checkpoint root:

    ckpt-000040/            model.safetensors, optimizer.pt, scheduler.pt, rng.pt, state.json
    LATEST                  the name of the newest complete checkpoint (written last, atomically)

A checkpoint is written into a hidden temp directory, every file fsynced, then renamed into place, and only then
does LATEST move to it; a kill at any moment leaves either the previous checkpoint or the new one, never half of
one. Optimizer/scheduler/RNG states hold only tensors and numbers and are read with `weights_only=True`.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_model, save_model

from findap.io import write_text

LATEST = "LATEST"


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


def save_weights(model, path: Path) -> None:
    """Model weights as safetensors (tied tensors stored once)."""
    save_model(model, str(path))


def load_weights(model, path: Path) -> None:
    missing, unexpected = load_model(model, str(path), strict=False)
    if unexpected or missing:
        raise RuntimeError(f"{path}: checkpoint does not match the model "
                           f"(missing {missing[:5]}, unexpected {unexpected[:5]})")


def save_checkpoint(root: Path, model, optimizer, scheduler, state: dict, *, keep: int = 1) -> Path:
    """Write a complete checkpoint atomically and point LATEST at it; keep the `keep` newest ones."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    name = f"ckpt-{state['global_step']:06d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{name}-"))
    save_weights(model, tmp / "model.safetensors")
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
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
    """Restore model, optimizer, scheduler and RNG from `path`; return its training state."""
    path = Path(path)
    load_weights(model, path / "model.safetensors")
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=True))
    scheduler.load_state_dict(torch.load(path / "scheduler.pt", weights_only=True))
    torch.set_rng_state(torch.load(path / "rng.pt", weights_only=True)["torch"])
    return json.loads((path / "state.json").read_text())
