"""Checkpoint selection for stage 1: on the dev loss (default) or on FinEval dev tasks scored during training.

With `train.fineval_tasks` set, every `fineval_every` steps the loop hands the live model to a `FinEvalScorer`,
which wraps it (no save/reload) in the hf engine and runs the eval runner on each task's dev split, direct mode,
the first `fineval_limit` items: the same code, prompts and metrics as `findap eval --split dev`. It returns
`fineval_<task>` (the task's primary metric, as in the report: acc for multiple choice, weighted F1 for
classification, ...) and `fineval_mean`, which the loop logs with the step. With `select_on: fineval` the best
checkpoint is the highest `fineval_mean` (ties keep the earlier step) and patience counts FinEval scorings
without improvement; the dev loss is still computed and logged.

Weights change between scorings, so the engine gets no request cache, and the runner writes into a fresh folder
per step (`<phase>/fineval/step-NNNNNN/`, kept for inspection): nothing computed for an earlier step can be
returned for a later one. Under several processes every rank scores the same items (as every rank computes the
dev loss; with FSDP a forward needs all ranks), and all ranks take rank 0's numbers
(`findap.training.parallel`, `same_on_all_ranks`) so they take the same selection and stopping decisions.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path
from typing import Sequence

from findap.train.attention import VARLEN
from findap.training.parallel import SingleProcess
from findap.training.state import TrainingState

SCORER_ATTENTION = "sdpa"  # what the engine's 4-D masks and padded batches need (findap eval loads models with it)
# Training implementations that score padded batches themselves (findap_varlen falls back to SDPA with a mask
# when it gets no document bounds); flash_attention_2 cannot take the engine's 4-D masks and is switched.
SCORES_PADDED = {SCORER_ATTENTION, VARLEN, "eager", "flex_attention"}


# ---- config-time checks ------------------------------------------------------------------------------------
def check_fineval_tasks(names: Sequence[str]) -> list[str]:
    """Resolve task/group names through the eval registry; the resolved task names, or a ValueError naming the
    valid ones. Judge-scored tasks are refused: they have no score without an LLM judge."""
    from findap.eval.registry import all_specs, groups, resolve

    specs, grouped = all_specs(), groups()
    for name in names:
        if name not in specs and name not in grouped and not (
                name.endswith((".yaml", ".yml")) and Path(name).exists()):
            raise ValueError(f"fineval_tasks: unknown FinEval task or group {name!r}; tasks: "
                             f"{', '.join(sorted(specs))}; groups: {', '.join(sorted(grouped))}")
    resolved = resolve(list(names))
    judged = [s.name for s in resolved if s.answer_type == "judge"]
    if judged:
        raise ValueError(f"fineval_tasks: judge-scored tasks need an LLM judge and cannot score checkpoints during "
                         f"training: {', '.join(judged)}; pick multiple-choice or classification tasks")
    return [s.name for s in resolved]


# ---- selection bookkeeping (the TrainingState saved in every checkpoint's state.json) -------------------------
def selection_state(cfg, scorer: "FinEvalScorer | None") -> TrainingState:
    """A fresh phase state selecting on `cfg.select_on`."""
    return TrainingState(select_on=cfg.select_on, selection_signature=_signature(cfg, scorer))


def resume_selection(raw: dict, cfg, scorer: "FinEvalScorer | None") -> TrainingState:
    """A resumed checkpoint's state (checkpoints written before FinEval selection existed select on the dev
    loss); a checkpoint that selected on something else cannot continue (its best score means something else)."""
    state = TrainingState.from_json(raw)
    wanted = _signature(cfg, scorer)
    if state.selection_signature != wanted:
        raise ValueError(
            f"the checkpoint at step {state.step} selects on {state.selection_signature}, the config on "
            f"{wanted}: restore the config, or delete the phase's ckpt/ and best/ folders to start the phase over")
    return state


def _signature(cfg, scorer) -> dict:
    if cfg.select_on == "dev_loss":
        return {"on": "dev_loss"}
    return {"on": "fineval", "tasks": scorer.task_names if scorer else None,
            "limit": scorer.limit if scorer else cfg.fineval_limit}


# ---- scoring the live model --------------------------------------------------------------------------------
class FinEvalScorer:
    """Scores the model being trained on FinEval dev tasks; `scorer(model, out_dir, dist)` -> step metrics."""

    def __init__(self, tasks: Sequence[str], tokenizer, *, limit: int, every: int, device="cpu",
                 precision: str = "auto", batch_size: int = 16, max_length: int = 2048):
        from findap.eval.runner import as_tasks

        names = check_fineval_tasks(tasks)
        self.tasks = as_tasks(names)  # loaded once; their docs are cached across evaluations
        self.task_names = [t.name for t in self.tasks]
        for task in self.tasks:  # fail before training, not at the first evaluation
            try:
                dev = task.docs("dev", limit)
            except Exception as exc:
                raise ValueError(f"fineval_tasks: task {task.name}: its data cannot be loaded here ({exc})") from exc
            if not dev:
                raise ValueError(f"fineval_tasks: task {task.name} has no dev items to select on")
        self.tokenizer = tokenizer
        self.limit, self.every = limit, every
        self.device, self.precision = device, precision
        self.batch_size, self.max_length = batch_size, max_length

    @classmethod
    def from_config(cls, cfg, tokenizer, *, device="cpu", precision: str = "auto") -> "FinEvalScorer | None":
        """The scorer `cfg.fineval_tasks` asks for, or None when they are empty."""
        if not cfg.fineval_tasks:
            return None
        return cls(cfg.fineval_tasks, tokenizer, limit=cfg.fineval_limit, every=cfg.fineval_every or cfg.eval_every,
                   device=device, precision=precision, batch_size=cfg.fineval_batch_size)

    def due(self, step: int, last: bool) -> bool:
        return last or step % self.every == 0

    def __call__(self, model, out_dir: Path, parallel: SingleProcess | None = None) -> dict[str, float]:
        """{"fineval_<task>": primary metric, ..., "fineval_mean": their mean} for the model's current weights.

        Rank 0 keeps the runner's per-task files (predictions per item) in `out_dir`; other ranks score into a
        temporary folder and take rank 0's numbers.
        """
        parallel = parallel or SingleProcess()
        with parallel.output_dir(out_dir) as target:
            scores = self._score(model, Path(target), parallel)
        return parallel.same_on_all_ranks(scores)  # one decision for all ranks: rank 0's numbers

    def _score(self, model, out_dir: Path, parallel: SingleProcess) -> dict[str, float]:
        from findap.engines import EngineSpec, make_engine
        from findap.eval.metrics import primary_metric
        from findap.eval.runner import evaluate

        if out_dir.exists():
            shutil.rmtree(out_dir)  # a rerun of this step (resume) must not read back an earlier attempt's files
        spec = EngineSpec(kind="hf", model=f"train@{out_dir.name}", batch_size=self.batch_size,
                          max_length=self.max_length, device=str(self.device), precision=self.precision,
                          cache_path=None)  # weights change every step: never a request cache
        with _inference_view(model):
            # the engine first: its model.to(device) reshards an FSDP model, so never inside the root forward.
            # Under FSDP every rank decodes in lockstep: each step's tokens are rank 0's (rank0_tokens).
            engine = make_engine(spec, model=model, tokenizer=self.tokenizer, agree_tokens=parallel.rank0_tokens)
            assert engine.cache is None
            out = parallel.run_inference(model, lambda m: evaluate(
                engine, self.tasks, mode="direct", limit=self.limit, out_dir=out_dir, role="dev",
                model_name=spec.model, progress=False))
        if out.get("skipped"):
            raise RuntimeError(f"FinEval selection: tasks could not be scored: {out['skipped']}")
        scores = {}
        for task in self.tasks:
            result = out["results"][task.name]
            metric = primary_metric(result, None, task.spec.answer_type, task.spec.metrics)
            scores[f"fineval_{task.name}"] = float(result[metric])
        finite = [v for v in scores.values() if math.isfinite(v)]
        scores["fineval_mean"] = sum(finite) / len(finite) if len(finite) == len(scores) else float("nan")
        return scores


class _inference_view:
    """Eval mode while scoring, and, only for flash attention (which cannot take the engine's 4-D masks), SDPA;
    the training setup afterwards. On CPU (findap_varlen) the live model's attention is never touched."""

    def __init__(self, model):
        self.model = model
        self.base = model.get_base_model() if hasattr(model, "get_base_model") else model  # peft (LoRA) wrapper

    def __enter__(self):
        self.was_training = self.model.training
        self.attention = self.base.config._attn_implementation
        if self.attention not in SCORES_PADDED:
            self.base.set_attn_implementation(SCORER_ATTENTION)
        return self.model

    def __exit__(self, *exc):
        if self.base.config._attn_implementation != self.attention:
            self.base.set_attn_implementation(self.attention)
        self.model.train(self.was_training)
        return False
