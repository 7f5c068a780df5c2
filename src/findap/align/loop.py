"""The alignment loop: packed rows -> summed response log-probs -> DPO + NLL -> AdamW, with dev-loss selection.

Plain and linear on purpose (torchtune style): plan the steps, then for each step accumulate the rows' losses,
clip, step, and every `eval_every` steps measure the dev loss and keep the best model. Optimizer, schedule, state,
checkpoints (`ckpt-NNNNNN/` + LATEST, with only the trainable weights) and progress are stage 1's
(findap.training).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from findap.align.config import AlignConfig
from findap.align.encode import TokenizedPair
from findap.align.logprobs import row_logprobs
from findap.align.loss import DPONLLTerms, dpo_nll_loss
from findap.align.packing import PackedRow, pack_pairs
from findap.align.schedule import plan_steps
from findap.host_memory import KeptHeapBound, release_free_memory
from findap.models import autocast
from findap.training.checkpoint import latest_checkpoint
from findap.training.optim import optimizer_for
from findap.training.parallel import SingleProcess
from findap.training.progress import TrainingLog
from findap.training.state import TrainingState


@dataclass
class StepCounts:
    pairs: int
    chosen_tokens: int


def step_counts(rows: list[PackedRow], by_id: dict[str, TokenizedPair]) -> StepCounts:
    ids = [pid for row in rows for pid in row.pair_ids]
    return StepCounts(len(ids), sum(len(by_id[pid].chosen_ids) for pid in ids))


def row_loss(model, row: PackedRow, ref: dict, cfg: AlignConfig, counts: StepCounts) -> DPONLLTerms:
    """This row's share of the step loss (normalised by the step's totals)."""
    sums, n_tokens = row_logprobs(model, row, cfg.loss_chunk_tokens)
    ref_pairs = torch.tensor([ref[pid] for pid in row.pair_ids], dtype=sums.dtype, device=sums.device)
    return dpo_nll_loss(
        sums[0::2], sums[1::2], ref_pairs[:, 0], ref_pairs[:, 1], n_tokens[0::2],
        beta=cfg.beta, alpha=cfg.alpha, nll_norm=cfg.nll_norm,
        n_pairs=counts.pairs, n_chosen_tokens=counts.chosen_tokens,
    )


def _accumulate(totals: dict, terms: DPONLLTerms) -> None:
    margin = terms.chosen_rewards - terms.rejected_rewards
    totals["loss"] += terms.loss.item()
    totals["dpo"] += terms.dpo.item()
    totals["nll"] += terms.nll.item()
    totals["chosen_reward"] += terms.chosen_rewards.sum().item()
    totals["rejected_reward"] += terms.rejected_rewards.sum().item()
    totals["margin"] += margin.sum().item()
    totals["accuracy"] += (margin > 0).float().sum().item()


def _new_totals() -> dict:
    return dict.fromkeys(["loss", "dpo", "nll", "chosen_reward", "rejected_reward", "margin", "accuracy"], 0.0)


def _finish(totals: dict, n_pairs: int) -> dict:
    # loss/dpo/nll are already step-normalised; the per-pair reward sums still need dividing.
    for key in ("chosen_reward", "rejected_reward", "margin", "accuracy"):
        totals[key] /= max(n_pairs, 1)
    return totals


@torch.no_grad()
def evaluate(model, rows: list[PackedRow], ref: dict, cfg: AlignConfig, by_id, precision: str) -> dict:
    """Dev loss over all dev pairs at once (one 'step' worth of normalisation)."""
    was_training = model.training
    model.eval()
    counts = step_counts(rows, by_id)
    totals = _new_totals()
    device = next(model.parameters()).device
    for row in rows:
        with autocast(device, precision, training=True):  # the precision the training loss has
            _accumulate(totals, row_loss(model, row, ref, cfg, counts))
    model.train(was_training)
    return _finish(totals, counts.pairs)


def resume(checkpoint_dir: Path, model, optimizer, scheduler,
           parallel: SingleProcess | None = None) -> TrainingState | None:
    """Restore the newest checkpoint under `checkpoint_dir` and return its state; None when there is none."""
    checkpoint_dir = Path(checkpoint_dir)
    ckpt = latest_checkpoint(checkpoint_dir)
    if ckpt is None:
        legacy = [d for d in (checkpoint_dir, checkpoint_dir.with_name(checkpoint_dir.name + ".old"))
                  if (d / "trainable.safetensors").exists()]
        if legacy:
            raise RuntimeError(f"{legacy[0]}: an align checkpoint in the old single-directory format, which this "
                               f"version cannot resume; delete {checkpoint_dir} (and any {checkpoint_dir.name}.old) "
                               "to start the stage over")
        return None
    return TrainingState.from_json((parallel or SingleProcess()).load_checkpoint(ckpt, model, optimizer, scheduler))


@dataclass
class AlignRun:
    """What the steps of one alignment run share."""

    model: object
    cfg: AlignConfig
    ref: dict
    by_id: dict
    rows: list[PackedRow]
    dev_rows: list[PackedRow]
    precision: str
    parallel: SingleProcess
    save_best: Callable[[object], None] | None
    progress: TrainingLog
    heap: KeptHeapBound = field(default_factory=KeptHeapBound)  # keeps the CPU heap near the first step's size

    def step(self, step_rows: list[PackedRow]) -> tuple[dict, int]:
        """One optimizer step's forward/backward over its rows; (metrics, real tokens run)."""
        device = next(self.model.parameters()).device
        counts = step_counts(step_rows, self.by_id)
        totals = _new_totals()
        for i, _ in self.parallel.local_passes(len(step_rows)):
            with autocast(device, self.precision, training=True):  # never fp16 without loss scaling
                terms = row_loss(self.model, step_rows[i], self.ref, self.cfg, counts)
            terms.loss.backward()
            _accumulate(totals, terms)
            self.heap.after_pass()
        return _finish(totals, counts.pairs), sum(len(r) for r in step_rows)

    def evaluate(self, state: TrainingState, step: int) -> bool:
        """Dev loss now (saving the best model); True when patience is exhausted."""
        if not self.dev_rows:
            return False
        release_free_memory()  # bounds heap fragmentation on CPU (findap.host_memory)
        metrics = evaluate(self.model, self.dev_rows, self.ref, self.cfg, self.by_id, self.precision)
        self.progress.record({"step": step, **{f"dev_{k}": v for k, v in metrics.items()}}, scalars_prefix="dev")
        if state.record_evaluation({"dev_loss": metrics["loss"]}, step) and self.save_best:
            self.save_best(self.model)
        self.heap.after_evaluation()  # the next pass starts from live memory, not on the evaluation's kept buffers
        return state.out_of_patience(self.cfg.patience)


def train(
    model,
    train_pairs: list[TokenizedPair],
    dev_pairs: list[TokenizedPair],
    ref: dict[str, tuple[float, float]],
    cfg: AlignConfig,
    *,
    seed: int,
    precision: str = "auto",
    checkpoint_dir: Path | None = None,
    save_best: Callable[[object], None] | None = None,
    log: Callable[[dict], None] = lambda record: None,
    progress: bool | None = None,
    parallel: SingleProcess | None = None,
) -> dict:
    """Train in place. `save_best(model)` is called whenever the dev loss improves (or at the end without dev)."""
    parallel = parallel or SingleProcess()
    rows = pack_pairs(train_pairs, cfg.row_tokens, cfg.share_prompt)
    steps = plan_steps(rows, cfg.tokens_per_step, cfg.epochs, seed)[: cfg.max_steps]
    total = len(steps)
    optimizer, scheduler = optimizer_for(model, cfg, cfg.lr, cfg.warmup, total)
    state = (resume(checkpoint_dir, model, optimizer, scheduler, parallel) if checkpoint_dir is not None
             else None) or TrainingState()
    tensorboard = Path(checkpoint_dir).parent / "tensorboard" if cfg.tensorboard and checkpoint_dir else None
    with TrainingLog("align", total=total, done=state.step, log=log, writes=parallel.is_main,
                     progress=cfg.progress if progress is None else progress, tensorboard_dir=tensorboard) as bar:
        run = AlignRun(model, cfg, ref, {p.id: p for p in train_pairs + dev_pairs}, rows,
                       pack_pairs(dev_pairs, cfg.row_tokens, cfg.share_prompt), precision, parallel, save_best, bar)
        if state.step == 0 and run.evaluate(state, 0):
            total = 0
        stopped_early = _train_steps(run, state, steps[:total], optimizer, scheduler, checkpoint_dir)
    if not run.dev_rows and save_best:
        save_best(model)
    return {"steps": state.step, "planned_steps": total, "best_dev_loss": state.best_score,
            "best_step": state.best_step, "stopped_early": stopped_early, "tokens": state.tokens,
            "train_pairs": len(train_pairs), "dev_pairs": len(dev_pairs)}


def _train_steps(run: AlignRun, state: TrainingState, steps: list[list[int]], optimizer, scheduler,
                 checkpoint_dir: Path | None) -> bool:
    """Steps state.step.. of the plan; True when patience stopped them."""
    run.model.train()
    started, tokens_run = time.perf_counter(), 0
    resumed_wall = state.wall_s
    stopped_early = False
    for step in range(state.step, len(steps)):
        metrics, n_tokens = run.step([run.rows[i] for i in steps[step]])
        tokens_run += n_tokens
        grad_norm = run.parallel.clip_gradients(run.model, run.cfg.grad_clip).item()
        lr = scheduler.get_last_lr()[0]
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        metrics.update(run.heap.after_step())  # resident GB, and a trim when the kept heap grew (CPU)
        state.step, state.tokens = step + 1, state.tokens + n_tokens
        elapsed = time.perf_counter() - started
        state.wall_s = resumed_wall + elapsed
        run.progress.record({"step": step + 1, "lr": lr, "grad_norm": grad_norm,
                             "tokens_per_s": tokens_run / max(elapsed, 1e-9), **metrics})
        run.progress.advance(step + 1, metrics["loss"], tokens_run / max(elapsed, 1e-9))
        done = step + 1 == len(steps)
        if (step + 1) % run.cfg.eval_every == 0 or done:
            stopped_early = run.evaluate(state, step + 1)
        if checkpoint_dir is not None and ((step + 1) % run.cfg.checkpoint_every == 0 or done or stopped_early):
            run.parallel.save_checkpoint(checkpoint_dir, run.model, optimizer, scheduler, state, trainable_only=True)
        if stopped_early:
            return True
    return False
