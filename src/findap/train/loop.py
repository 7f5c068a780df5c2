"""The training loop of one phase (a curriculum group, or its CPT/IT half in sequential mode).

Plain and linear on purpose (torchtune style): pack, batch by token budget, step, evaluate, checkpoint. The
process layout (one process, replicas, FSDP) is behind `parallel` (findap.training.parallel): the loop is the
same for all of them.

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

from findap.host_memory import KeptHeapBound, release_free_memory
from findap.io import write_json
from findap.models import autocast
from findap.train.attention import FLAT_BACKENDS, model_inputs
from findap.train.config import TrainConfig
from findap.train.loss import token_loss_sum
from findap.train.packing import collate_flat, collate_rows, pack_documents, packing_efficiency, trained_tokens
from findap.train.select import resume_selection, selection_state
from findap.training.checkpoint import latest_checkpoint
from findap.training.optim import optimizer_for
from findap.training.parallel import SingleProcess
from findap.training.progress import TrainingLog
from findap.training.state import TrainingState


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
               parallel: SingleProcess | None = None,
               after_pass: Callable[[], None] | None = None) -> tuple[float, int]:
    """Forward/backward every micro-batch of one step; returns (mean token loss of the step, trained tokens).

    `after_pass` runs after each backward (the loop bounds the CPU heap there: findap.host_memory.KeptHeapBound)."""
    parallel = parallel or SingleProcess()
    window = sum(trained_tokens(b) for b in batches)  # every rank sees the same plan, so no communication needed
    total = torch.zeros((), dtype=torch.float64)
    for i, weight in parallel.local_passes(len(batches)):  # weight 0: FSDP's padding pass
        batch = batches[i]
        with autocast(device, precision, training=True):  # never fp16 without loss scaling (models.autocast_dtype)
            loss_sum, _ = parallel.run_as_forward(model, token_loss_sum, model_inputs(batch, backend, device),
                                                  batch["labels"], chunk=chunk)
        ((loss_sum / max(window, 1)) * weight).backward()
        if weight:
            total += loss_sum.detach().double().cpu()
        if after_pass is not None:
            after_pass()
    parallel.finish_step(model, total)  # sums the loss over ranks, and the gradients of replicas
    return float(total) / max(window, 1), window


@torch.no_grad()
def dev_loss(model, docs: list[dict], cfg: TrainConfig, backend: str, device, precision: str, pad_id: int,
             parallel: SingleProcess | None = None) -> dict:
    """Mean token loss on development documents, overall and per kind (cpt / it)."""
    parallel = parallel or SingleProcess()
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
                loss, count = parallel.run_as_forward(model, token_loss_sum, model_inputs(batch, backend, device),
                                                      batch["labels"], chunk=cfg.loss_chunk_tokens)
            s, n = s + float(loss), n + count
        sums[kind] = (s, n)
        out[f"dev_loss_{kind}"] = s / max(n, 1)
    if sums:
        out["dev_loss"] = sum(s for s, _ in sums.values()) / max(1, sum(n for _, n in sums.values()))
    model.train(was_training)
    return out


@dataclass
class PhaseRun:
    """What one phase's steps share: the model, its optimizer and schedule, the plan and the state."""

    model: object
    phase: Phase
    cfg: TrainConfig
    backend: str
    device: object
    precision: str
    pad_id: int
    parallel: SingleProcess
    fineval: object
    steps: list
    total: int
    optimizer: object
    scheduler: object
    state: TrainingState
    heap: KeptHeapBound  # bounds the kept CPU heap, at most the explicit memory budget (findap.host_memory)

    @property
    def out(self) -> Path:
        return Path(self.phase.out_dir)

    def step(self, step: int) -> dict:
        """Train optimizer step `step` (0-based); its metrics record."""
        t0 = time.time()
        batches = micro_batches(self.steps[step], self.cfg, self.backend, self.pad_id)
        loss, n_trained = train_step(self.model, batches, self.backend, self.device, self.precision,
                                     self.cfg.loss_chunk_tokens, self.parallel, after_pass=self.heap.after_pass)
        if not math.isfinite(loss):
            self.optimizer.zero_grad(set_to_none=True)
            kept = latest_checkpoint(self.out / "ckpt")
            raise TrainingDiverged(f"{self.phase.name}: loss is {loss} at step {step + 1}; weights not updated; "
                                   f"last good checkpoint: {kept or 'none (no checkpoint written yet)'}")
        grad_norm = self.parallel.clip_gradients(self.model, self.cfg.grad_clip)  # global norm, also over shards
        lr = self.scheduler.get_last_lr()[0]
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        n_tokens = sum(b["n_real"] for b in batches)
        s = self.state
        s.step, s.tokens, s.trained_tokens = step + 1, s.tokens + n_tokens, s.trained_tokens + n_trained
        return {"phase": self.phase.name, "step": step + 1, "loss": round(loss, 6), "lr": lr,
                "grad_norm": round(float(grad_norm), 6), "tokens": s.tokens,
                "tokens_per_s": round(n_tokens / max(time.time() - t0, 1e-9), 1)}

    def evaluate(self, step: int, last: bool) -> dict:
        """Dev loss (and FinEval when due) now, as every rank agrees on it; saves best/ when it improved."""
        release_free_memory()  # bounds heap fragmentation on CPU (findap.host_memory)
        measured = dev_loss(self.model, self.phase.dev_docs, self.cfg, self.backend, self.device, self.precision,
                            self.pad_id, self.parallel)
        measured = self.parallel.same_on_all_ranks(measured)  # rank 0's numbers: one save/stop decision for all
        shown = {k: round(v, 6) for k, v in measured.items()}
        if self.fineval is not None and self.fineval.due(step, last):
            scores = self.fineval(self.model, self.out / "fineval" / f"step-{step:06d}", self.parallel)
            measured.update(scores)
            shown.update(scores)
        if self.state.record_evaluation(measured, step):  # every rank: FSDP gathers the weights
            self.parallel.save_weights(self.model, self.out / "best" / "model.safetensors")
        self.heap.after_evaluation()  # the next pass starts from live memory, not on the evaluation's kept buffers
        return shown

    def checkpoint(self) -> None:
        self.parallel.save_checkpoint(self.out / "ckpt", self.model, self.optimizer, self.scheduler, self.state)


def start_phase(model, phase: Phase, cfg: TrainConfig, *, backend: str, device, precision: str, seed: int,
                pad_id: int, parallel: SingleProcess, fineval) -> PhaseRun:
    """Plan the phase, build its optimizer and schedule, and resume from its newest checkpoint if there is one."""
    if cfg.select_on == "fineval" and fineval is None:
        raise ValueError("select_on=fineval needs a FinEval scorer: pass fineval=FinEvalScorer.from_config(...)")
    Path(phase.out_dir).mkdir(parents=True, exist_ok=True)
    steps = plan_steps(phase.train_docs, cfg, seed=seed, epochs=phase.epochs)
    total = min(len(steps), phase.max_steps or len(steps))
    optimizer, scheduler = optimizer_for(model, cfg, phase.lr, phase.warmup, total)
    state = selection_state(cfg, fineval)
    ckpt = latest_checkpoint(Path(phase.out_dir) / "ckpt")
    if ckpt is not None:
        state = resume_selection(parallel.load_checkpoint(ckpt, model, optimizer, scheduler), cfg, fineval)
    heap = KeptHeapBound.for_training(cfg.budget_bytes, cfg.gradient_checkpointing)
    return PhaseRun(model, phase, cfg, backend, device, precision, pad_id, parallel, fineval, steps, total,
                    optimizer, scheduler, state, heap)


def train_phase(model, phase: Phase, cfg: TrainConfig, *, backend: str, device, precision: str = "auto",
                seed: int = 0, pad_id: int = 0, log: Callable[[dict], None] | None = None,
                parallel: SingleProcess | None = None, fineval=None) -> PhaseResult:
    """Train one phase with resumable checkpoints in `phase.out_dir/ckpt` and the best weights in `best/`.

    `fineval` (a `findap.train.select.FinEvalScorer`) also scores FinEval dev tasks at evaluations; needed when
    `cfg.select_on == "fineval"`.
    """
    parallel = parallel or SingleProcess()
    run = start_phase(model, phase, cfg, backend=backend, device=device, precision=precision, seed=seed,
                      pad_id=pad_id, parallel=parallel, fineval=fineval)
    state = run.state
    result = PhaseResult(packing_efficiency=packing_efficiency([r for s in run.steps for r in s], cfg.seq_len))
    model.train()
    started = time.time() - state.wall_s
    tensorboard = run.out / "tensorboard" if cfg.tensorboard else None
    with TrainingLog(phase.name, total=run.total, done=state.step, log=log, writes=parallel.is_main,
                     progress=cfg.progress, tensorboard_dir=tensorboard) as progress:
        for step in range(state.step, run.total):
            record = run.step(step)
            record.update(run.heap.after_step())  # resident GB, and a trim when the kept heap grew (CPU)
            last = step + 1 == run.total
            if (phase.dev_docs or fineval) and ((step + 1) % cfg.eval_every == 0 or last):
                record.update(run.evaluate(step + 1, last))
            progress.record(record)
            progress.advance(step + 1, record["loss"], record["tokens_per_s"])
            result.history.append(record)
            stop = state.out_of_patience(cfg.patience)
            state.wall_s = time.time() - started
            if (step + 1) % cfg.checkpoint_every == 0 or last or stop:  # every rank calls; rank 0 writes
                run.checkpoint()
            if stop:
                result.stopped_early = True
                break
    selects = phase.dev_docs if cfg.select_on == "dev_loss" else fineval is not None
    if not selects:
        parallel.save_weights(model, run.out / "best" / "model.safetensors")  # the final weights are the selection
    result.steps, result.tokens, result.trained_tokens = state.step, state.tokens, state.trained_tokens
    result.wall_s, result.best_dev_loss, result.best_step = state.wall_s, state.best_dev_loss, state.best_step
    result.select_on, result.best_score = state.select_on, state.best_score
    return result


def load_best(model, phase_dir: Path, parallel: SingleProcess | None = None) -> None:
    (parallel or SingleProcess()).load_weights(model, Path(phase_dir) / "best" / "model.safetensors")


def write_phase_done(phase_dir: Path, result: PhaseResult) -> None:
    summary = {k: v for k, v in result.__dict__.items() if k != "history"}
    write_json(Path(phase_dir) / "DONE", summary)


def read_phase_done(phase_dir: Path) -> dict | None:
    p = Path(phase_dir) / "DONE"
    return json.loads(p.read_text()) if p.exists() else None
