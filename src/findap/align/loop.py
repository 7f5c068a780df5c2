"""The alignment loop: packed rows -> summed response log-probs -> DPO + NLL -> AdamW, with dev-loss selection.

Plain and linear on purpose (torchtune style): plan the steps, then for each step accumulate the rows' losses,
clip, step, and every `eval_every` steps measure the dev loss and keep the best model. Checkpoints are stage 1's
(findap.train.checkpoint): `ckpt-NNNNNN/` + LATEST, with only the trainable weights.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm import tqdm

from findap.align.config import AlignConfig
from findap.align.encode import TokenizedPair
from findap.align.logprobs import row_logprobs
from findap.align.loss import DPONLLTerms, dpo_nll_loss
from findap.align.packing import PackedRow, pack_pairs
from findap.align.schedule import plan_steps, warmup_linear
from findap.host_memory import release_free_memory
from findap.models import autocast
from findap.train.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from findap.train.optim import adamw_kernel


@dataclass
class StepCounts:
    pairs: int
    chosen_tokens: int


def step_counts(rows: list[PackedRow], by_id: dict[str, TokenizedPair]) -> StepCounts:
    ids = [pid for row in rows for pid in row.pair_ids]
    return StepCounts(len(ids), sum(len(by_id[pid].chosen_ids) for pid in ids))


def row_loss(model, row: PackedRow, ref: dict, cfg: AlignConfig, counts: StepCounts) -> DPONLLTerms:
    """This row's share of the step loss (normalised by the step's totals)."""
    sums, n_tokens = row_logprobs(model, row, cfg.logprob_chunk)
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


def resume(checkpoint_dir: Path, model, optimizer, scheduler) -> dict | None:
    """Restore the newest checkpoint under `checkpoint_dir` and return its counters; None when there is none."""
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
    state = load_checkpoint(ckpt, model, optimizer, scheduler)
    if "step" not in state:
        raise RuntimeError(f"{ckpt}: not an align checkpoint (no 'step' in state.json)")
    return state


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
    progress: bool = True,
) -> dict:
    """Train in place. `save_best(model)` is called whenever the dev loss improves (or at the end without dev)."""
    device = next(model.parameters()).device
    by_id = {p.id: p for p in train_pairs + dev_pairs}
    rows = pack_pairs(train_pairs, cfg.row_tokens, cfg.share_prompt)
    dev_rows = pack_pairs(dev_pairs, cfg.row_tokens, cfg.share_prompt)
    steps = plan_steps(rows, cfg.batch_tokens, cfg.epochs, seed)
    if cfg.max_steps:
        steps = steps[: cfg.max_steps]
    total = len(steps)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay,
                                  **adamw_kernel(params))
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_linear(s, total, cfg.warmup))

    state = {"step": 0, "best_dev": None, "best_step": None, "bad_evals": 0, "tokens": 0}
    if checkpoint_dir is not None:
        state = resume(checkpoint_dir, model, optimizer, scheduler) or state

    def maybe_evaluate(step: int) -> bool:
        """Dev loss now; returns True when patience is exhausted."""
        if not dev_rows:
            return False
        release_free_memory()  # bounds heap fragmentation on CPU (findap.host_memory)
        metrics = evaluate(model, dev_rows, ref, cfg, by_id, precision)
        log({"step": step, **{f"dev_{k}": v for k, v in metrics.items()}})
        if state["best_dev"] is None or metrics["loss"] < state["best_dev"]:
            state.update(best_dev=metrics["loss"], best_step=step, bad_evals=0)
            if save_best:
                save_best(model)
            return False
        state["bad_evals"] += 1
        return cfg.patience is not None and state["bad_evals"] >= cfg.patience

    if state["step"] == 0 and maybe_evaluate(0):
        total = 0
    model.train()
    started, tokens_run = time.perf_counter(), 0
    bar = tqdm(total=total, initial=state["step"], desc="align", disable=not progress)
    stopped_early = False
    for step in range(state["step"], total):
        step_rows = [rows[i] for i in steps[step]]
        counts = step_counts(step_rows, by_id)
        totals = _new_totals()
        for row in step_rows:
            with autocast(device, precision, training=True):  # never fp16 without loss scaling
                terms = row_loss(model, row, ref, cfg, counts)
            terms.loss.backward()
            _accumulate(totals, terms)
            tokens_run += len(row)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip).item()
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        state["step"] = step + 1
        state["tokens"] += sum(len(r) for r in step_rows)
        elapsed = time.perf_counter() - started
        log({"step": step + 1, "lr": scheduler.get_last_lr()[0], "grad_norm": grad_norm,
             "tokens_per_s": tokens_run / max(elapsed, 1e-9), **_finish(totals, counts.pairs)})
        bar.update(1)
        done = step + 1 == total
        if (step + 1) % cfg.eval_every == 0 or done:
            stopped_early = maybe_evaluate(step + 1)
        if checkpoint_dir is not None and ((step + 1) % cfg.checkpoint_every == 0 or done or stopped_early):
            save_checkpoint(checkpoint_dir, model, optimizer, scheduler, state, step=state["step"],
                            trainable_only=True)
        if stopped_early:
            break
    bar.close()
    if not dev_rows and save_best:
        save_best(model)
    return {"steps": state["step"], "planned_steps": total, "best_dev_loss": state["best_dev"],
            "best_step": state["best_step"], "stopped_early": stopped_early, "tokens": state["tokens"],
            "train_pairs": len(train_pairs), "dev_pairs": len(dev_pairs)}
