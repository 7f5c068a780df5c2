"""The training loop of one phase (a curriculum group, or its CPT/IT half in sequential mode).

Plain and linear on purpose (torchtune style): pack, batch by token budget, step, evaluate, checkpoint.

Loss normalisation: the loss of an optimizer step is (sum of token losses over every micro-batch of the step) /
(trained tokens in the whole step). Each micro-batch backpropagates its token-loss sum divided by the step's total
count, which is known before the first forward because labels are known. So 1 x 8 rows and 4 x 2 rows give the
same loss and the same gradient, whatever the packing.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from findap.host_memory import release_free_memory
from findap.io import write_json
from findap.models import autocast
from findap.train.attention import FLAT_BACKENDS, model_inputs
from findap.train.checkpoint import (full_model, latest_checkpoint, load_checkpoint, load_weights, save_checkpoint,
                                     save_weights)
from findap.train.config import TrainConfig
from findap.train.distributed import clip_gradients, finish_step, local_passes, same_on_all_ranks
from findap.train.loss import token_loss_sum
from findap.train.optim import build_optimizer, build_scheduler
from findap.train.packing import collate_flat, collate_rows, pack_documents, packing_efficiency, trained_tokens
from findap.train.select import resume_selection, selection_state, update_selection


class TrainingDiverged(RuntimeError):
    """Loss became NaN/inf; the last good checkpoint is left on disk."""


@dataclass
class Phase:
    name: str
    train_docs: list[dict]
    dev_docs: list[dict]
    lr: float
    warmup: float
    epochs: float = 1.0
    max_steps: int | None = None
    out_dir: Path = Path(".")


@dataclass
class Distributed:
    """Data-parallel placement: micro-batch i of a step runs on rank i % world."""

    rank: int = 0
    world: int = 1
    all_reduce: Callable | None = None  # sums a tensor over ranks in place (None in one process)
    barrier: Callable | None = None


@dataclass
class PhaseResult:
    steps: int = 0
    tokens: int = 0
    trained_tokens: int = 0
    wall_s: float = 0.0
    best_dev_loss: float | None = None  # dev loss of the selected checkpoint (the lowest when selecting on it)
    best_step: int | None = None
    select_on: str = "dev_loss"  # what selected best_step: dev_loss (lowest) or fineval (highest fineval_mean)
    best_score: float | None = None  # the selecting value at best_step
    stopped_early: bool = False
    packing_efficiency: float = 0.0
    history: list[dict] = field(default_factory=list)


def plan_steps(docs: list[dict], cfg: TrainConfig, *, seed: int, epochs: float = 1.0) -> list[list[list[dict]]]:
    """Optimizer steps, each a list of packed rows; every epoch is packed and shuffled with its own seed."""
    rows: list[list[dict]] = []
    for e in range(math.ceil(epochs)):
        epoch_rows = pack_documents(docs, cfg.seq_len, seed=seed + e)
        take = len(epoch_rows) if e + 1 <= epochs else max(1, round(len(epoch_rows) * (epochs - e)))
        rows += epoch_rows[:take]
    per_step = cfg.rows_per_micro_batch * cfg.accumulation
    return [rows[i:i + per_step] for i in range(0, len(rows), per_step)]


def micro_batches(step_rows: list[list[dict]], cfg: TrainConfig, backend: str, pad_id: int) -> list[dict]:
    n = cfg.rows_per_micro_batch
    chunks = [step_rows[i:i + n] for i in range(0, len(step_rows), n)]
    if backend in FLAT_BACKENDS:
        return [collate_flat(c) for c in chunks]
    return [collate_rows(c, cfg.seq_len, pad_id) for c in chunks]


def train_step(model, batches: list[dict], backend: str, device, precision: str, chunk: int,
               dist: Distributed | None = None) -> tuple[float, int]:
    """Forward/backward every micro-batch of one step; returns (mean token loss of the step, trained tokens)."""
    dist = dist or Distributed()
    window = sum(trained_tokens(b) for b in batches)  # every rank sees the same plan, so no communication needed
    total = torch.zeros((), dtype=torch.float64)
    for i, weight in local_passes(model, len(batches), dist):  # weight 0: FSDP's padding pass (distributed.py)
        batch = batches[i]
        with autocast(device, precision, training=True):  # never fp16 without loss scaling (models.autocast_dtype)
            loss_sum, _ = token_loss_sum(model, model_inputs(batch, backend, device), batch["labels"], chunk=chunk)
        ((loss_sum / max(window, 1)) * weight).backward()
        if weight:
            total += loss_sum.detach().double().cpu()
    finish_step(model, dist, total)  # sums the loss over ranks, and the gradients of replicas
    return float(total) / max(window, 1), window


@torch.no_grad()
def dev_loss(model, docs: list[dict], cfg: TrainConfig, backend: str, device, precision: str, pad_id: int) -> dict:
    """Mean token loss on development documents, overall and per kind (cpt / it)."""
    was_training = model.training
    model.eval()
    out, sums = {}, {}
    for kind in ("cpt", "it"):
        kind_docs = [d for d in docs if d["kind"] == kind][: cfg.dev_max_docs]
        if not kind_docs:
            continue
        rows = pack_documents(kind_docs, cfg.seq_len, seed=None)
        s, n = 0.0, 0
        for batch in micro_batches(rows, cfg, backend, pad_id):
            with autocast(device, precision, training=True):  # the precision the training loss has
                loss, count = token_loss_sum(model, model_inputs(batch, backend, device), batch["labels"],
                                             chunk=cfg.loss_chunk_tokens)
            s, n = s + float(loss), n + count
        sums[kind] = (s, n)
        out[f"dev_loss_{kind}"] = s / max(n, 1)
    if sums:
        out["dev_loss"] = sum(s for s, _ in sums.values()) / max(1, sum(n for _, n in sums.values()))
    model.train(was_training)
    return out


def _progress(enabled: bool, total: int, done: int, name: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    progress = Progress(TextColumn(f"[bold]{name}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("loss {task.fields[loss]:.4f}  {task.fields[tps]:.0f} tok/s"),
                        TimeRemainingColumn(), disable=not enabled, transient=False)
    task = progress.add_task(name, total=total, completed=done, loss=float("nan"), tps=0.0)
    return progress, task


def _tensorboard(enabled: bool, log_dir: Path):
    if not enabled:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is optional
        return None
    return SummaryWriter(str(log_dir))


def train_phase(model, phase: Phase, cfg: TrainConfig, *, backend: str, device, precision: str = "auto",
                seed: int = 0, pad_id: int = 0, log: Callable[[dict], None] | None = None,
                dist: Distributed | None = None, stop_after: int | None = None, fineval=None) -> PhaseResult:
    """Train one phase with resumable checkpoints in `phase.out_dir/ckpt` and the best weights in `best/`.

    `fineval` (a `findap.train.select.FinEvalScorer`) also scores FinEval dev tasks at evaluations; needed when
    `cfg.select_on == "fineval"`. `stop_after` (tests) ends the process-local run after that many steps, as a
    crash would.
    """
    dist = dist or Distributed()
    if cfg.select_on == "fineval" and fineval is None:
        raise ValueError("select_on=fineval needs a FinEval scorer: pass fineval=FinEvalScorer.from_config(...)")
    out = Path(phase.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    log = log or (lambda record: None)
    steps = plan_steps(phase.train_docs, cfg, seed=seed, epochs=phase.epochs)
    total = min(len(steps), phase.max_steps or len(steps))
    warmup = round(phase.warmup * total)
    optimizer = build_optimizer(model, phase.lr, weight_decay=cfg.weight_decay, betas=cfg.betas, eps=cfg.eps)
    scheduler = build_scheduler(optimizer, total, warmup, cfg.schedule, cfg.min_lr_ratio)
    result = PhaseResult(packing_efficiency=packing_efficiency([r for s in steps for r in s], cfg.seq_len))
    state = {"global_step": 0, **selection_state(cfg, fineval), "tokens": 0, "trained_tokens": 0, "wall_s": 0.0}
    ckpt = latest_checkpoint(out / "ckpt")
    if ckpt is not None:
        state = resume_selection(load_checkpoint(ckpt, model, optimizer, scheduler), cfg, fineval)
    best_path = out / "best" / "model.safetensors"
    model.train()
    writer = _tensorboard(cfg.tensorboard and dist.rank == 0, out / "tensorboard")
    progress, task = _progress(cfg.progress and dist.rank == 0, total, state["global_step"], phase.name)
    started = time.time() - state["wall_s"]
    with progress:
        for step in range(state["global_step"], total):
            t0 = time.time()
            batches = micro_batches(steps[step], cfg, backend, pad_id)
            loss, n_trained = train_step(model, batches, backend, device, precision, cfg.loss_chunk_tokens, dist)
            if not math.isfinite(loss):
                optimizer.zero_grad(set_to_none=True)
                kept = latest_checkpoint(out / "ckpt")
                raise TrainingDiverged(f"{phase.name}: loss is {loss} at step {step + 1}; weights not updated; "
                                       f"last good checkpoint: {kept or 'none (no checkpoint written yet)'}")
            grad_norm = clip_gradients(model, cfg.grad_clip)  # global norm, also over FSDP shards
            lr = scheduler.get_last_lr()[0]
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            n_tokens = sum(b["n_real"] for b in batches)
            dt = time.time() - t0
            state.update(global_step=step + 1, tokens=state["tokens"] + n_tokens,
                         trained_tokens=state["trained_tokens"] + n_trained)
            record = {"phase": phase.name, "step": step + 1, "loss": round(loss, 6), "lr": lr,
                      "grad_norm": round(float(grad_norm), 6), "tokens": state["tokens"],
                      "tokens_per_s": round(n_tokens / max(dt, 1e-9), 1)}
            last = step + 1 == total
            if (phase.dev_docs or fineval) and ((step + 1) % cfg.eval_every == 0 or last):
                release_free_memory()  # bounds heap fragmentation on CPU (findap.host_memory)
                measured = dev_loss(model, phase.dev_docs, cfg, backend, device, precision, pad_id)
                measured = same_on_all_ranks(measured, dist)  # rank 0's numbers: one save/stop decision for all
                record.update({k: round(v, 6) for k, v in measured.items()})
                if fineval is not None and fineval.due(step + 1, last):
                    measured.update(fineval(model, out / "fineval" / f"step-{step + 1:06d}", dist))  # rank 0's
                    record.update({k: v for k, v in measured.items() if k.startswith("fineval_")})
                if update_selection(state, measured, step + 1):  # every rank: FSDP gathers the weights
                    _save_best(model, best_path)
            if dist.rank == 0:
                log(record)
                if writer is not None:
                    for k, v in record.items():
                        if isinstance(v, (int, float)) and k != "step":
                            writer.add_scalar(f"{phase.name}/{k}", v, step + 1)
            progress.update(task, completed=step + 1, loss=loss, tps=record["tokens_per_s"])
            result.history.append(record)
            stop = state["bad_evals"] >= cfg.patience
            state["wall_s"] = time.time() - started
            if (step + 1) % cfg.save_every == 0 or last or stop:  # every rank calls; rank 0 writes
                save_checkpoint(out / "ckpt", model, optimizer, scheduler, state)
            if stop:
                result.stopped_early = True
                break
            if stop_after is not None and step + 1 >= stop_after:
                break
    if writer is not None:
        writer.close()
    selects = phase.dev_docs if cfg.select_on == "dev_loss" else fineval is not None
    if not selects:
        _save_best(model, best_path)  # no dev data: the final weights are the selection
    result.steps, result.tokens, result.trained_tokens = state["global_step"], state["tokens"], state["trained_tokens"]
    result.wall_s, result.best_dev_loss, result.best_step = state["wall_s"], state["best_dev_loss"], state["best_step"]
    result.select_on, result.best_score = state["select_on"], state["best_score"]
    return result


def _save_best(model, path: Path) -> None:
    """Every rank calls it (under FSDP the full weights are gathered to rank 0); rank 0 writes."""
    model = full_model(model)
    if model is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(".tmp-" + path.name)
    save_weights(model, tmp)
    tmp.replace(path)  # atomic: a kill leaves the previous best


def load_best(model, phase_dir: Path) -> None:
    load_weights(model, Path(phase_dir) / "best" / "model.safetensors")


def write_phase_done(phase_dir: Path, result: PhaseResult) -> None:
    summary = {k: v for k, v in result.__dict__.items() if k != "history"}
    write_json(Path(phase_dir) / "DONE", summary)


def read_phase_done(phase_dir: Path) -> dict | None:
    p = Path(phase_dir) / "DONE"
    return json.loads(p.read_text()) if p.exists() else None
