"""Stage 1's part of the training loop (findap.training.loop): one phase (a curriculum group, or its CPT/IT half in
sequential mode) packed into steps, the token loss, and the dev loss (and FinEval) its evaluations measure.

Loss normalisation: the loss of an optimizer step is (sum of token losses over every micro-batch of the step) /
(trained tokens in the whole step). Each micro-batch backpropagates its token-loss sum divided by the step's total
count, which is known before the first forward because labels are known. So 1 x 8 rows and 4 x 2 rows give the
same loss and the same gradient, whatever the packing.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from findap.io import write_json
from findap.models import autocast
from findap.train.attention import FLAT_BACKENDS, model_inputs
from findap.train.config import TrainConfig
from findap.train.loss import token_loss_sum
from findap.train.packing import collate_flat, collate_rows, pack_documents, packing_efficiency, trained_tokens
from findap.train.select import resume_selection, selection_state
from findap.training.loop import (Evaluation, FitResult, StepBatches, Trainer, TrainingDiverged,
                                  backward_passes)
from findap.training.parallel import SingleProcess
from findap.training.state import TrainingState

__all__ = ["Phase", "PhaseResult", "TrainingDiverged", "train_phase", "phase_trainer", "train_step", "dev_loss",
           "plan_steps", "micro_batches", "load_best", "write_phase_done", "read_phase_done"]


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


@dataclass
class StageOneLoss:
    """The loss of a stage-1 micro-batch: its token-loss sum over the trained tokens of the whole step."""

    backend: str
    device: object
    chunk: int  # tokens per LM-head chunk
    n_sums = 1  # the token-loss sum

    def compute_loss(self, model, batch: dict, step: StepBatches) -> tuple[torch.Tensor, torch.Tensor]:
        loss_sum, _ = token_loss_sum(model, model_inputs(batch, self.backend, self.device), batch["labels"],
                                     chunk=self.chunk)
        return loss_sum / max(step.trained_tokens, 1), loss_sum.detach().double().cpu().reshape(1)


def step_of(batches: list[dict]) -> StepBatches:
    """The optimizer step of these micro-batches (every rank sees the same plan: its totals need no communication)."""
    return StepBatches(batches, tokens=sum(b["n_real"] for b in batches),
                       trained_tokens=sum(trained_tokens(b) for b in batches))


def train_step(model, batches: list[dict], backend: str, device, precision: str, chunk: int,
               parallel: SingleProcess | None = None) -> tuple[float, int]:
    """Forward/backward every micro-batch of one step (no update); (mean token loss of the step, trained tokens)."""
    step = step_of(batches)
    sums = backward_passes(model, StageOneLoss(backend, device, chunk), step, parallel or SingleProcess(), device,
                           precision)
    return float(sums[0]) / max(step.trained_tokens, 1), step.trained_tokens


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


@dataclass(kw_only=True)
class PhaseTask(StageOneLoss):
    """One phase as a findap.training.loop.TrainingTask: its packed steps, the token loss, dev loss and FinEval."""

    phase: Phase
    cfg: TrainConfig
    precision: str = "auto"
    pad_id: int = 0
    seed: int = 0
    parallel: SingleProcess = field(default_factory=SingleProcess)
    fineval: object = None  # findap.train.select.FinEvalScorer
    packing_efficiency: float = 0.0
    evaluates_before_training = False
    dev_in_step_record = True

    @property
    def name(self) -> str:
        return self.phase.name

    @property
    def out(self) -> Path:
        return Path(self.phase.out_dir)

    @property
    def evaluates(self) -> bool:
        return bool(self.phase.dev_docs or self.fineval)

    @property
    def selects(self) -> bool:
        return bool(self.phase.dev_docs if self.cfg.select_on == "dev_loss" else self.fineval is not None)

    def plan(self) -> list:
        steps = plan_steps(self.phase.train_docs, self.cfg, seed=self.seed, epochs=self.phase.epochs)
        self.packing_efficiency = packing_efficiency([r for s in steps for r in s], self.cfg.seq_len)
        return steps[: min(len(steps), self.phase.max_steps or len(steps))]

    def step_batches(self, rows: list[list[dict]]) -> StepBatches:
        return step_of(micro_batches(rows, self.cfg, self.backend, self.pad_id))

    def step_metrics(self, sums: list[float], step: StepBatches) -> dict:
        return {"phase": self.phase.name, "loss": round(sums[0] / max(step.trained_tokens, 1), 6)}

    def evaluate(self, model, step: int, last: bool) -> Evaluation:
        """Dev loss (and FinEval when due) now, as every rank agrees on it (rank 0's numbers)."""
        measured = dev_loss(model, self.phase.dev_docs, self.cfg, self.backend, self.device, self.precision,
                            self.pad_id, self.parallel)
        measured = self.parallel.same_on_all_ranks(measured)  # one save/stop decision for all ranks
        shown = {k: round(v, 6) for k, v in measured.items()}
        if self.fineval is not None and self.fineval.due(step, last):
            scores = self.fineval(model, self.out / "fineval" / f"step-{step:06d}", self.parallel)
            measured.update(scores)
            shown.update(scores)
        return Evaluation(measured, shown)

    def save_best(self, model) -> None:
        self.parallel.save_weights(model, self.out / "best" / "model.safetensors")

    def new_state(self) -> TrainingState:
        return selection_state(self.cfg, self.fineval)

    def resumed_state(self, raw: dict) -> TrainingState:
        return resume_selection(raw, self.cfg, self.fineval)


def phase_trainer(model, phase: Phase, cfg: TrainConfig, *, backend: str, device, precision: str = "auto",
                  seed: int = 0, pad_id: int = 0, log: Callable[[dict], None] | None = None,
                  parallel: SingleProcess | None = None, fineval=None) -> Trainer:
    """The trainer of one phase: checkpoints in `phase.out_dir/ckpt`, the best weights in `best/`."""
    if cfg.select_on == "fineval" and fineval is None:
        raise ValueError("select_on=fineval needs a FinEval scorer: pass fineval=FinEvalScorer.from_config(...)")
    parallel = parallel or SingleProcess()
    out = Path(phase.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    task = PhaseTask(backend, device, cfg.loss_chunk_tokens, phase=phase, cfg=cfg, precision=precision,
                     pad_id=pad_id, seed=seed, parallel=parallel, fineval=fineval)
    return Trainer(task, model, cfg, phase.lr, phase.warmup, device, precision, parallel, out / "ckpt", log=log,
                   tensorboard_dir=out / "tensorboard")


def phase_result(trainer: Trainer, fitted: FitResult) -> PhaseResult:
    state = fitted.state
    return PhaseResult(
        steps=state.step, tokens=state.tokens, trained_tokens=state.trained_tokens, wall_s=state.wall_s,
        best_dev_loss=state.best_dev_loss, best_step=state.best_step, select_on=state.select_on,
        best_score=state.best_score, stopped_early=fitted.stopped_early,
        packing_efficiency=trainer.task.packing_efficiency, history=fitted.history)


def train_phase(model, phase: Phase, cfg: TrainConfig, *, backend: str, device, precision: str = "auto",
                seed: int = 0, pad_id: int = 0, log: Callable[[dict], None] | None = None,
                parallel: SingleProcess | None = None, fineval=None) -> PhaseResult:
    """Train one phase with resumable checkpoints in `phase.out_dir/ckpt` and the best weights in `best/`.

    `fineval` (a `findap.train.select.FinEvalScorer`) also scores FinEval dev tasks at evaluations; needed when
    `cfg.select_on == "fineval"`.
    """
    trainer = phase_trainer(model, phase, cfg, backend=backend, device=device, precision=precision, seed=seed,
                            pad_id=pad_id, log=log, parallel=parallel, fineval=fineval)
    return phase_result(trainer, trainer.fit())


def load_best(model, phase_dir: Path, parallel: SingleProcess | None = None) -> None:
    (parallel or SingleProcess()).load_weights(model, Path(phase_dir) / "best" / "model.safetensors")


def write_phase_done(phase_dir: Path, result: PhaseResult) -> None:
    summary = {k: v for k, v in result.__dict__.items() if k != "history"}
    write_json(Path(phase_dir) / "DONE", summary)


def read_phase_done(phase_dir: Path) -> dict | None:
    p = Path(phase_dir) / "DONE"
    return json.loads(p.read_text()) if p.exists() else None
