"""The training loop of both stages, written once: plan, optimizer and schedule, resume, then per optimizer step
the micro-batch passes, clipping, update, dev evaluation, best-weight selection, patience, checkpoint and logging.

A stage supplies a `TrainingTask`, as a TRL trainer subclass supplies `compute_loss`: the planned steps, the
micro-batches of a step, the loss of one micro-batch, and its dev metrics (stage 1: findap.train.loop.PhaseTask;
alignment: findap.align.loop.AlignTask). The process layout (one process, replicas, FSDP2) is behind `parallel`
(findap.training.parallel), so both stages run under any of them; the loop holds no rank branches.

Loss normalisation: `compute_loss` returns the micro-batch's share of the step loss, already divided by totals of
the whole step (trained tokens; pairs and chosen tokens), which are known before the first forward. So the loss
and gradient of a step do not depend on how it is split into micro-batches or over ranks. It also returns sums
(float64, on the CPU) that the loop adds over passes and ranks and hands back to `step_metrics`.

Callbacks (`LoopCallback`) run after each optimizer step (adding fields to its record) and around evaluations;
`ResidentMemory` (every stage uses it) records resident memory per step.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

import torch

from findap.allocator import active as active_allocator
from findap.host_memory import release_free_memory, resident_bytes
from findap.models import autocast
from findap.training.checkpoint import latest_checkpoint
from findap.training.knobs import TrainingKnobs
from findap.training.optim import optimizer_for
from findap.training.parallel import SingleProcess
from findap.training.progress import TrainingLog
from findap.training.state import TrainingState


class TrainingDiverged(RuntimeError):
    """Loss became NaN/inf; the last good checkpoint is left on disk."""


@dataclass
class StepBatches:
    """One optimizer step: its micro-batches (one forward/backward pass each) and its totals."""

    micro: list  # what the task's compute_loss takes
    tokens: int  # real (non-padding) tokens run
    trained_tokens: int  # tokens with a loss
    totals: Any = None  # the task's own step denominators (alignment: pairs and chosen tokens)


@dataclass
class Evaluation:
    measured: dict  # values selection reads (dev_loss, fineval_mean), the same on every rank
    logged: dict  # fields of the log record


class TrainingTask(Protocol):
    """What a stage supplies to the loop."""

    name: str  # progress bar, TensorBoard prefix, error messages
    n_sums: int  # length of the sums compute_loss returns
    evaluates: bool  # has dev data (or another dev score): evaluations run every eval_every steps and at the end
    selects: bool  # evaluations pick the best weights; otherwise the final weights are saved as the best
    evaluates_before_training: bool  # also evaluate the starting weights (they can be the best)
    dev_in_step_record: bool  # an evaluation's fields join the step's record, else a record of their own

    def plan(self) -> list: ...  # the optimizer steps, each what step_batches takes

    def step_batches(self, planned) -> StepBatches: ...

    def compute_loss(self, model, micro, step: StepBatches) -> tuple[torch.Tensor, torch.Tensor]: ...

    def step_metrics(self, sums: list[float], step: StepBatches) -> dict: ...  # the record's fields, with "loss"

    def evaluate(self, model, step: int, last: bool) -> Evaluation: ...

    def save_best(self, model) -> None: ...

    def new_state(self) -> TrainingState: ...

    def resumed_state(self, raw: dict) -> TrainingState: ...


class LoopCallback:
    """Hooks the loop calls; each does nothing unless a subclass overrides it."""

    def after_step(self) -> dict:
        """After each optimizer step; fields for the step's record."""
        return {}

    def before_evaluation(self) -> None:
        """Before a dev evaluation."""

    def after_evaluation(self) -> None:
        """After a dev evaluation."""


class ResidentMemory(LoopCallback):
    """The process's resident memory at the end of each step (`rss_gb` in its record); on glibc's malloc, the heap
    an evaluation freed goes back to the OS after it (its small blocks would otherwise stay between the training
    passes' live ones). tcmalloc reuses freed spans by size for the next pass: returning them would only make that
    pass fault them in again."""

    def after_step(self) -> dict:
        rss = resident_bytes()
        return {"rss_gb": round(rss / 2**30, 3)} if rss else {}

    def after_evaluation(self) -> None:
        if active_allocator() == "glibc":
            release_free_memory()


def backward_passes(model, task: TrainingTask, step: StepBatches, parallel: SingleProcess, device,
                    precision: str) -> torch.Tensor:
    """Forward/backward this process's micro-batches of `step`; the step's sums over all passes and ranks."""
    sums = torch.zeros(task.n_sums, dtype=torch.float64)
    for i, weight in parallel.local_passes(len(step.micro)):  # weight 0: FSDP's padding pass
        with autocast(device, precision, training=True):  # never fp16 without loss scaling (models.autocast_dtype)
            loss, pass_sums = parallel.run_as_forward(model, task.compute_loss, step.micro[i], step)
        (loss * weight).backward()
        if weight:
            sums += pass_sums
    parallel.finish_step(model, sums)  # sums over ranks, and the gradients of replicas
    return sums


def restore_checkpoint(checkpoint_dir: Path | None, model, optimizer, scheduler,
                       parallel: SingleProcess) -> dict | None:
    """Restore the newest checkpoint under `checkpoint_dir`; its state.json, None when there is none."""
    ckpt = latest_checkpoint(Path(checkpoint_dir)) if checkpoint_dir is not None else None
    return None if ckpt is None else parallel.load_checkpoint(ckpt, model, optimizer, scheduler)


@dataclass
class FitResult:
    state: TrainingState
    planned_steps: int
    stopped_early: bool = False
    history: list[dict] = field(default_factory=list)  # every step's record


@dataclass
class Trainer:
    """One training run of `task` on `model`, resumable from `checkpoint_dir` (None: no checkpoints)."""

    task: TrainingTask
    model: Any
    knobs: TrainingKnobs  # optimizer, schedule, cadence, patience, clipping, logging
    lr: float
    warmup: float
    device: Any
    precision: str
    parallel: SingleProcess
    checkpoint_dir: Path | None
    log: Callable[[dict], None] | None = None
    tensorboard_dir: Path | None = None  # used when knobs.tensorboard
    progress: bool | None = None  # None: knobs.progress
    trainable_only: bool = False  # checkpoints hold the trainable parameters only (LoRA adapters)
    callbacks: list[LoopCallback] = field(default_factory=lambda: [ResidentMemory()])

    def fit(self) -> FitResult:
        """Train from the newest checkpoint (or the start) to the end of the plan, or until patience runs out."""
        steps = self.task.plan()
        optimizer, scheduler = optimizer_for(self.model, self.knobs, self.lr, self.warmup, len(steps))
        raw = restore_checkpoint(self.checkpoint_dir, self.model, optimizer, scheduler, self.parallel)
        state = self.task.new_state() if raw is None else self.task.resumed_state(raw)
        result = FitResult(state, len(steps))
        self.model.train()
        started = time.time() - state.wall_s
        with self._training_log(len(steps), state.step) as progress:
            if self.task.evaluates_before_training and self.task.evaluates and state.step == 0:
                self._log(progress, None, self._evaluate(state, 0, last=False))
                if state.out_of_patience(self.knobs.patience):
                    result.planned_steps, result.stopped_early = 0, True
                    return result
            for step in range(state.step, len(steps)):
                t0 = time.time()
                batches = self.task.step_batches(steps[step])
                sums = backward_passes(self.model, self.task, batches, self.parallel, self.device, self.precision)
                record = self._update(step, batches, sums.tolist(), optimizer, scheduler, state, t0)
                last = step + 1 == len(steps)
                due = self.task.evaluates and ((step + 1) % self.knobs.eval_every == 0 or last)
                self._log(progress, record, self._evaluate(state, step + 1, last) if due else None)
                result.history.append(record)
                result.stopped_early = state.out_of_patience(self.knobs.patience)
                state.wall_s = time.time() - started
                if (step + 1) % self.knobs.checkpoint_every == 0 or last or result.stopped_early:
                    self._checkpoint(optimizer, scheduler, state)  # every rank calls; rank 0 writes
                if result.stopped_early:
                    break
        if not self.task.selects:
            self.task.save_best(self.model)  # the final weights are the selection
        return result

    def _training_log(self, total: int, done: int) -> TrainingLog:
        return TrainingLog(self.task.name, total=total, done=done, log=self.log, writes=self.parallel.is_main,
                           progress=self.knobs.progress if self.progress is None else self.progress,
                           tensorboard_dir=self.tensorboard_dir if self.knobs.tensorboard else None)

    def _update(self, step: int, batches: StepBatches, sums: list[float], optimizer, scheduler,
                state: TrainingState, t0: float) -> dict:
        """Clip, update and schedule after step `step` (0-based)'s passes; its record. A non-finite loss updates
        nothing and stops the run (the last checkpoint stays the last good one)."""
        metrics = self.task.step_metrics(sums, batches)
        if not math.isfinite(metrics["loss"]):
            optimizer.zero_grad(set_to_none=True)
            kept = latest_checkpoint(Path(self.checkpoint_dir)) if self.checkpoint_dir is not None else None
            raise TrainingDiverged(f"{self.task.name}: loss is {metrics['loss']} at step {step + 1}; weights not "
                                   f"updated; last good checkpoint: {kept or 'none (no checkpoint written yet)'}")
        grad_norm = self.parallel.clip_gradients(self.model, self.knobs.grad_clip)  # global norm, also over shards
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state.step, state.tokens = step + 1, state.tokens + batches.tokens
        state.trained_tokens += batches.trained_tokens
        record = {"step": step + 1, **metrics, "lr": lr, "grad_norm": round(float(grad_norm), 6),
                  "tokens": state.tokens, "tokens_per_s": round(batches.tokens / max(time.time() - t0, 1e-9), 1)}
        for callback in self.callbacks:
            record.update(callback.after_step())
        return record

    def _evaluate(self, state: TrainingState, step: int, last: bool) -> Evaluation:
        """The task's dev metrics now; the best weights saved when they improved (every rank: FSDP gathers)."""
        for callback in self.callbacks:
            callback.before_evaluation()
        evaluation = self.task.evaluate(self.model, step, last)
        if state.record_evaluation(evaluation.measured, step):
            self.task.save_best(self.model)
        for callback in self.callbacks:
            callback.after_evaluation()
        return evaluation

    def _log(self, progress: TrainingLog, record: dict | None, evaluation: Evaluation | None) -> None:
        """Log the step's record (when there is one) and the evaluation (when there was one), in the layout the task
        asks for: the evaluation's fields in the step's record, or a record of their own after it."""
        if record is not None:
            if evaluation is not None and self.task.dev_in_step_record:
                record.update(evaluation.logged)
            progress.record(record)
            progress.advance(record["step"], record["loss"], record["tokens_per_s"])
        if evaluation is not None and not (self.task.dev_in_step_record and record is not None):
            step = record["step"] if record is not None else 0
            progress.record({"step": step, **evaluation.logged}, scalars_prefix="dev")

    def _checkpoint(self, optimizer, scheduler, state: TrainingState) -> None:
        if self.checkpoint_dir is not None:
            self.parallel.save_checkpoint(Path(self.checkpoint_dir), self.model, optimizer, scheduler, state,
                                          trainable_only=self.trainable_only)
