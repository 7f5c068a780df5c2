"""Alignment's part of the training loop (findap.training.loop): packed preference rows -> summed response
log-probs -> DPO + NLL, with dev-loss selection that also considers the starting weights (step 0).

The loop itself (optimizer, schedule, cadence, patience, checkpoints `ckpt-NNNNNN/` + LATEST, resume, progress,
resident memory per step, the process layout) is stage 1's. The loss of a step is normalised by the step's own pair and
chosen-token counts, so how its rows are packed, accumulated or spread over ranks does not change it.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from findap.align.config import AlignConfig
from findap.align.encode import TokenizedPair
from findap.align.logprobs import row_logprobs
from findap.align.loss import DPONLLTerms, dpo_nll_loss
from findap.align.packing import PackedRow, pack_pairs
from findap.align.schedule import plan_steps
from findap.models import autocast
from findap.training.loop import Evaluation, FitResult, StepBatches, Trainer
from findap.training.parallel import SingleProcess
from findap.training.state import TrainingState

# what a step's (or the dev set's) passes sum: the loss terms (already normalised by the step) and per-pair sums
SUMS = ("loss", "dpo", "nll", "chosen_reward", "rejected_reward", "margin", "accuracy")
PER_PAIR = ("chosen_reward", "rejected_reward", "margin", "accuracy")  # divided by the pairs at the end


@dataclass
class StepCounts:
    pairs: int
    chosen_tokens: int


def step_counts(rows: list[PackedRow], by_id: dict[str, TokenizedPair]) -> StepCounts:
    ids = [pid for row in rows for pid in row.pair_ids]
    return StepCounts(len(ids), sum(len(by_id[pid].chosen_ids) for pid in ids))


def term_sums(terms: DPONLLTerms) -> torch.Tensor:
    """The SUMS of one row, float64 on the CPU (the loop adds them over rows and ranks)."""
    margin = terms.chosen_rewards - terms.rejected_rewards
    return torch.stack([terms.loss.detach(), terms.dpo.detach(), terms.nll.detach(), terms.chosen_rewards.sum(),
                        terms.rejected_rewards.sum(), margin.sum(), (margin > 0).float().sum()]).double().cpu()


def finish_sums(sums: list[float], n_pairs: int) -> dict:
    """Named metrics from the summed SUMS: loss/dpo/nll are already step-normalised, the rewards become means."""
    metrics = dict(zip(SUMS, sums))
    for key in PER_PAIR:
        metrics[key] /= max(n_pairs, 1)
    return metrics


@dataclass(kw_only=True)
class AlignTask:
    """Alignment as a findap.training.loop.TrainingTask, over packed training and dev rows."""

    cfg: AlignConfig
    ref: dict[str, tuple[float, float]]  # reference log-probs (chosen, rejected) by pair id
    by_id: dict[str, TokenizedPair]  # every pair of the rows
    rows: list[PackedRow]
    dev_rows: list[PackedRow]
    seed: int
    precision: str
    parallel: SingleProcess
    save_best_model: Callable[[object], None] | None = None
    name = "align"
    n_sums = len(SUMS)
    evaluates_before_training = True  # the starting policy can be the best
    dev_in_step_record = False  # dev records of their own: {"step", "dev_loss", "dev_dpo", ...}

    @property
    def evaluates(self) -> bool:
        return bool(self.dev_rows)

    selects = evaluates  # the dev loss picks the saved model

    def plan(self) -> list[list[int]]:
        return plan_steps(self.rows, self.cfg.tokens_per_step, self.cfg.epochs, self.seed)[: self.cfg.max_steps]

    def step_batches(self, row_indices: list[int]) -> StepBatches:
        return self._step([self.rows[i] for i in row_indices])

    def _step(self, rows: list[PackedRow]) -> StepBatches:
        return StepBatches(rows, tokens=sum(len(r) for r in rows), trained_tokens=sum(len(r.targets) for r in rows),
                           totals=step_counts(rows, self.by_id))

    def compute_loss(self, model, row: PackedRow, step: StepBatches) -> tuple[torch.Tensor, torch.Tensor]:
        """This row's share of the step loss (normalised by the step's pairs and chosen tokens), and its SUMS."""
        logps, n_tokens = row_logprobs(model, row, self.cfg.loss_chunk_tokens)
        ref_pairs = torch.tensor([self.ref[pid] for pid in row.pair_ids], dtype=logps.dtype, device=logps.device)
        terms = dpo_nll_loss(logps[0::2], logps[1::2], ref_pairs[:, 0], ref_pairs[:, 1], n_tokens[0::2],
                             beta=self.cfg.beta, alpha=self.cfg.alpha, nll_norm=self.cfg.nll_norm,
                             n_pairs=step.totals.pairs, n_chosen_tokens=step.totals.chosen_tokens)
        return terms.loss, term_sums(terms)

    def step_metrics(self, sums: list[float], step: StepBatches) -> dict:
        return finish_sums(sums, step.totals.pairs)

    @torch.no_grad()
    def dev_metrics(self, model) -> dict:
        """The step metrics of all dev rows taken as one step (one normalisation), in the training precision."""
        was_training = model.training
        model.eval()
        step = self._step(self.dev_rows)
        sums = torch.zeros(len(SUMS), dtype=torch.float64)
        device = next(model.parameters()).device
        for row in self.dev_rows:
            with autocast(device, self.precision, training=True):  # the precision the training loss has
                sums += self.parallel.run_as_forward(model, self.compute_loss, row, step)[1]
        model.train(was_training)
        return finish_sums(sums.tolist(), step.totals.pairs)

    def evaluate(self, model, step: int, last: bool) -> Evaluation:
        metrics = self.parallel.same_on_all_ranks(self.dev_metrics(model))  # one save/stop decision for all ranks
        return Evaluation({"dev_loss": metrics["loss"]}, {f"dev_{k}": v for k, v in metrics.items()})

    def save_best(self, model) -> None:
        if self.save_best_model is not None:
            self.save_best_model(model)

    def new_state(self) -> TrainingState:
        return TrainingState()

    def resumed_state(self, raw: dict) -> TrainingState:
        return TrainingState.from_json(raw)


def evaluate(model, rows: list[PackedRow], ref: dict, cfg: AlignConfig, by_id: dict[str, TokenizedPair],
             precision: str) -> dict:
    """Dev metrics (loss, dpo, nll, rewards, margin, accuracy) of `rows` taken as one step."""
    task = AlignTask(cfg=cfg, ref=ref, by_id=by_id, rows=[], dev_rows=rows, seed=0, precision=precision,
                     parallel=SingleProcess())
    return task.dev_metrics(model)


def refuse_single_directory_checkpoint(checkpoint_dir: Path) -> None:
    """Checkpoints written before alignment shared stage 1's format (checkpoint/trainable.safetensors) cannot be
    resumed: say so, with the fix, instead of silently starting over."""
    checkpoint_dir = Path(checkpoint_dir)
    if (checkpoint_dir / "LATEST").exists():
        return
    legacy = [d for d in (checkpoint_dir, checkpoint_dir.with_name(checkpoint_dir.name + ".old"))
              if (d / "trainable.safetensors").exists()]
    if legacy:
        raise RuntimeError(f"{legacy[0]}: an align checkpoint in the old single-directory format, which this "
                           f"version cannot resume; delete {checkpoint_dir} (and any {checkpoint_dir.name}.old) "
                           "to start the stage over")


def align_trainer(
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
    log: Callable[[dict], None] | None = None,
    progress: bool | None = None,
    parallel: SingleProcess | None = None,
) -> Trainer:
    """The alignment run. `save_best(model)` is called whenever the dev loss improves (or at the end without dev);
    checkpoints under `checkpoint_dir` (LoRA: the adapters only), TensorBoard next to it."""
    parallel = parallel or SingleProcess()
    if checkpoint_dir is not None:
        refuse_single_directory_checkpoint(checkpoint_dir)
    task = AlignTask(cfg=cfg, ref=ref, by_id={p.id: p for p in train_pairs + dev_pairs},
                     rows=pack_pairs(train_pairs, cfg.row_tokens, cfg.share_prompt),
                     dev_rows=pack_pairs(dev_pairs, cfg.row_tokens, cfg.share_prompt), seed=seed,
                     precision=precision, parallel=parallel, save_best_model=save_best)
    return Trainer(task, model, cfg, cfg.lr, cfg.warmup, next(model.parameters()).device, precision, parallel,
                   checkpoint_dir, log=log, progress=progress,
                   tensorboard_dir=Path(checkpoint_dir).parent / "tensorboard" if checkpoint_dir else None,
                   trainable_only=cfg.finetune == "lora")


def summarize(fitted: FitResult, train_pairs: list, dev_pairs: list) -> dict:
    state = fitted.state
    return {"steps": state.step, "planned_steps": fitted.planned_steps, "best_dev_loss": state.best_score,
            "best_step": state.best_step, "stopped_early": fitted.stopped_early, "tokens": state.tokens,
            "train_pairs": len(train_pairs), "dev_pairs": len(dev_pairs)}


def train(model, train_pairs: list[TokenizedPair], dev_pairs: list[TokenizedPair], ref: dict[str, tuple[float, float]],
          cfg: AlignConfig, **options) -> dict:
    """Train in place (`options`: those of `align_trainer`); the run's summary."""
    return summarize(align_trainer(model, train_pairs, dev_pairs, ref, cfg, **options).fit(), train_pairs, dev_pairs)
