"""`findap train`: stage 1 of FinRec, joint CPT + IT over a curriculum of groups, output a model directory.

Phases: in joint mode one phase per group (CPT and IT mixed in one packed stream); in sequential mode two per
group (its CPT documents, then its IT documents), for the paper's joint-vs-sequential ablation. Each phase starts
from the previous phase's selected weights (best dev loss, or best FinEval dev score with `select_on: fineval`)
with a fresh optimizer, its own LR and warmup. A finished phase leaves `groups/<phase>/DONE`, so a rerun after a
crash skips it and resumes the next one from its last checkpoint.
"""
from __future__ import annotations

import hashlib
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from findap.io import DataError, read_records
from findap.models import autocast_dtype, describe_precision, load_model, load_tokenizer, pick_device, resolve_model
from findap.provenance import digest_text, model_fingerprint
from findap.train.attention import hf_implementation, resolve_backend
from findap.train.config import GroupConfig, TrainConfig
from findap.train.loop import (Phase, load_best, micro_batches, phase_result, phase_trainer, plan_steps,
                               read_phase_done, train_step, write_phase_done)
from findap.train.select import FinEvalScorer
from findap.train.tokenize import TokenizeStats, tokenize_examples
from findap.training import parallel as parallel_layouts
from findap.training.autotune import fastest_plan, pass_speed
from findap.training.lora import apply_lora
from findap.training.memory import ModelShape, MemoryPlan, measured_budget, plan_memory, resident_bytes


def group_files(group: GroupConfig, data_dir: Path | None) -> tuple[list[str], list[str]]:
    """Training and dev files of a group: explicit ones, else the curate stage's parquet files."""
    train, dev = list(group.train), list(group.dev)
    if not train:
        if data_dir is None:
            raise DataError(f"train.groups[{group.name}]", None, "train",
                            "no training files: list them or run the curate stage first")
        train = [str(Path(data_dir) / group.name / "train.parquet")]
        default_dev = Path(data_dir) / group.name / "dev.parquet"
        if not dev and default_dev.exists():
            dev = [str(default_dev)]
    return train, dev


def load_docs(files: list[str], tokenizer, seq_len: int, stats: TokenizeStats) -> list[dict]:
    docs = []
    for f in files:
        docs += tokenize_examples(read_records(f, required=("kind",)), tokenizer, seq_len, source=f, stats=stats)
    return docs


def build_phases(cfg: TrainConfig, data_dir: Path | None, tokenizer, out_dir: Path,
                 stats: TokenizeStats) -> list[Phase]:
    phases = []
    for group in cfg.groups:
        train_files, dev_files = group_files(group, data_dir)
        train_docs = load_docs(train_files, tokenizer, cfg.seq_len, stats)
        dev_docs = load_docs(dev_files, tokenizer, cfg.seq_len, stats)
        train_docs = [d for d in train_docs if d["kind"] in cfg.kinds]  # `kinds: [it]`: the IT-only ablation
        dev_docs = [d for d in dev_docs if d["kind"] in cfg.kinds]
        kinds = [None] if cfg.mode == "joint" else [k for k in ("cpt", "it") if k in cfg.kinds]
        for kind in kinds:
            name = group.name if kind is None else f"{group.name}-{kind}"
            pick = (lambda docs: docs) if kind is None else (lambda docs, k=kind: [d for d in docs if d["kind"] == k])
            if not pick(train_docs):
                continue
            phases.append(Phase(name=name, train_docs=pick(train_docs), dev_docs=pick(dev_docs),
                                out_dir=out_dir / "groups" / name, **cfg.group_knobs(group)))
    if not phases:
        raise DataError("train.groups", None, "train", "no training documents in any group")
    return phases


def fit_to_memory(model_name: str, cfg: TrainConfig, *, backend: str, device, precision: str,
                  parallel) -> tuple[TrainConfig, MemoryPlan]:
    """`cfg` with the micro-batch, checkpointing and loss chunk `train.memory` picks (findap.training.memory), and
    the plan.

    Runs before the model loads, so a configuration that cannot fit fails in seconds. Every rank takes rank 0's
    budget: the ranks must run the same number of micro-batches (FSDP's collectives)."""
    from transformers import AutoConfig

    shape = ModelShape.from_config(AutoConfig.from_pretrained(resolve_model(model_name)), finetune=cfg.finetune,
                                   lora_r=cfg.lora_r)
    budget = None
    if cfg.memory_mode == "budget":
        budget = (cfg.budget_bytes, "train.memory.budget_gb")
    elif cfg.memory_mode == "auto":
        limit, source = measured_budget(device)
        budget = (int(parallel.same_on_all_ranks({"budget": float(limit)})["budget"]), source)
    sharded = isinstance(parallel, parallel_layouts.FullyShard)
    plan = plan_memory(cfg, shape, backend=backend, half=autocast_dtype(device, precision, training=True) is not None,
                       shards=parallel.world if sharded else 1,
                       baseline=resident_bytes() if device.type == "cpu" else 0, budget=budget)
    parallel.on_main(print, f"[findap train] precision: {describe_precision(device, precision, training=True)}",
                     file=sys.stderr, flush=True)
    parallel.on_main(print, f"[findap train] memory plan: {plan.describe()}", file=sys.stderr, flush=True)
    return fitted_to(cfg, plan), plan


def train_model(model_name: str, cfg: TrainConfig, out_dir: Path, *, data_dir: Path | None = None, seed: int = 0,
                device: str = "auto", precision: str = "auto", log=None) -> dict:
    """Run every phase of `cfg` from `model_name`; write `out_dir/model`; return the summary."""
    # First the process group: under torchrun / accelerate launch it sets this rank's GPU (LOCAL_RANK), before
    # anything (the bf16 capability query of resolve_backend included) touches CUDA; then the device is that GPU,
    # by index, for the model, the batches and the FinEval engine alike (one GPU per rank, never all on cuda:0).
    parallel = parallel_layouts.start(cfg.sharding, cfg.finetune)
    device = parallel.device(pick_device(device))
    out_dir = Path(out_dir)
    started = time.time()
    run = prepare_run(model_name, cfg, out_dir, data_dir=data_dir, device=device, precision=precision,
                      seed=seed, parallel=parallel)
    phases, model = run.phases, run.model
    # keyed on the settings as written, not as fitted to this machine's memory: the fitted micro-batch only
    # regroups the same step's tokens, and it moves with the resident set, which would make every key unstable
    keys = phase_keys(model_name, cfg, phases, seed=seed, precision=precision, device=device)
    done_phases, retrained = {}, False
    for i, phase in enumerate(phases):
        if i:
            load_best(model, phases[i - 1].out_dir, parallel)  # the curriculum continues from the selection
        parallel.on_main(claim_phase_dir, phase.out_dir, keys[i], stale=retrained)
        parallel.barrier()
        if read_phase_done(phase.out_dir) is not None:
            parallel.on_main(print, f"[findap train] {phase.name}: trained before from the same start, settings and "
                             f"documents; keeping its weights ({phase.out_dir})", file=sys.stderr, flush=True)
        else:
            retrained = True
            trainer = phase_trainer(model, phase, run.cfg, backend=run.backend, device=device,
                                    precision=precision, seed=seed + i, pad_id=run.tokenizer.pad_token_id,
                                    log=log, parallel=parallel, fineval=run.fineval)
            parallel.on_main(write_phase_done, phase.out_dir, phase_result(trainer, trainer.fit()))
            parallel.barrier()  # rank 0 wrote best/ and DONE; every rank reads them next
        done_phases[phase.name] = read_phase_done(phase.out_dir)
    load_best(model, phases[-1].out_dir, parallel)
    model_dir = out_dir / "model"
    parallel.save_model_dir(model, run.tokenizer, model_dir, merge_in_place=True)  # FSDP gathers; rank 0 writes
    parallel.barrier()
    return summarize(run, done_phases, model_dir, wall_s=time.time() - started)


def phase_keys(model_name: str, cfg: TrainConfig, phases: list[Phase], *, seed: int, precision: str,
               device) -> list[str]:
    """What each phase's weights follow from: the start model, the stage's settings, and every group up to and
    including this one (its settings and its tokenized documents). A phase whose key is unchanged need not train
    again, whatever changed after it: a recipe that adds a group or retunes the last one keeps the earlier phases.
    Settings are compared whole (the memory budget included), so any doubt means training again."""
    shared = cfg.model_dump(mode="json", exclude={"groups"})
    # precision as resolved here: `auto` is bf16 on one CPU and fp32 on another
    resolved = str(autocast_dtype(device, precision, training=True) or "fp32")
    key = digest_text("train phase", model_fingerprint(model_name), shared, seed, resolved, str(device))
    keys = []
    for i, phase in enumerate(phases):
        documents = hashlib.sha256()
        for doc in phase.train_docs + [None] + phase.dev_docs:  # None: where train ends and dev begins
            documents.update(repr(None if doc is None else (doc["kind"], doc["input_ids"], doc.get("labels")))
                             .encode())
        knobs = {"lr": phase.lr, "warmup": phase.warmup, "epochs": phase.epochs, "max_steps": phase.max_steps}
        key = digest_text(key, phase.name, knobs, i, documents.hexdigest())
        keys.append(key)
    return keys


PHASE_KEY = "KEY"


def claim_phase_dir(phase_dir: Path, key: str, *, stale: bool) -> None:
    """Keep a phase folder (finished, or a checkpoint to resume) only when it was made for `key`; else empty it.
    `stale`: an earlier phase trained in this call, so this one's start weights are new whatever its key says."""
    phase_dir = Path(phase_dir)
    key_file = phase_dir / PHASE_KEY
    made_for = key_file.read_text(encoding="utf-8").strip() if key_file.exists() else None
    if phase_dir.exists() and (stale or made_for != key):
        shutil.rmtree(phase_dir)
    if not phase_dir.exists():
        phase_dir.mkdir(parents=True)
        key_file.write_text(key + "\n", encoding="utf-8")


@dataclass
class PreparedRun:
    """What the phases of a stage-1 run share."""

    cfg: TrainConfig  # fitted to memory
    memory_plan: MemoryPlan
    backend: str
    tokenizer: object
    phases: list[Phase]
    stats: TokenizeStats
    fineval: FinEvalScorer | None
    model: object  # wrapped for the process layout


def prepare_run(model_name: str, cfg: TrainConfig, out_dir: Path, *, data_dir, device, precision, seed,
                parallel) -> PreparedRun:
    """Tokenize the phases' data, fit the configuration to memory, then load and wrap the model."""
    backend = resolve_backend(cfg.attention, device, precision)
    tokenizer = load_tokenizer(model_name)
    stats = TokenizeStats()
    phases = build_phases(cfg, data_dir, tokenizer, out_dir, stats)
    fineval = FinEvalScorer.from_config(cfg, tokenizer, device=device, precision=precision)  # loads its dev items
    cfg, memory_plan = fit_to_memory(model_name, cfg, backend=backend, device=device, precision=precision,
                                     parallel=parallel)
    torch.manual_seed(seed)
    model = load_model(model_name, device=device, attn_implementation=hf_implementation(backend))
    if cfg.finetune == "lora":
        model = apply_lora(model, cfg)
    if cfg.memory_autotune:
        cfg, memory_plan = autotune_plan(model, cfg, memory_plan, phases, backend=backend, device=device,
                                         precision=precision, pad_id=tokenizer.pad_token_id, seed=seed,
                                         parallel=parallel)
    parallel_layouts.set_checkpointing(model, cfg.gradient_checkpointing)
    model = parallel.wrap(model, device=device, precision=precision, checkpointing=cfg.gradient_checkpointing)
    return PreparedRun(cfg, memory_plan, backend, tokenizer, phases, stats, fineval, model)


def autotune_plan(model, cfg: TrainConfig, plan: MemoryPlan, phases: list[Phase], *, backend: str, device,
                  precision: str, pad_id: int, seed: int, parallel) -> tuple[TrainConfig, MemoryPlan]:
    """train.memory.autotune: the fastest of the plans that fit (findap.training.autotune), timed on the first
    phase's first step; `cfg` fitted to it. Skipped, saying why, with several processes (each rank would time
    its own) or when only one plan fits."""
    candidates = [plan, *plan.alternatives]
    if parallel.world > 1 or len(candidates) == 1 or not phases[0].train_docs:
        why = "several processes" if parallel.world > 1 else "one plan fits" if len(candidates) == 1 else "no data"
        parallel.on_main(print, f"[findap train] memory autotune skipped ({why})", file=sys.stderr, flush=True)
        return cfg, plan
    rows = plan_steps(phases[0].train_docs, cfg, seed=seed, epochs=phases[0].epochs)[0]
    model.train()

    def speed(candidate: MemoryPlan) -> float:
        fitted = fitted_to(cfg, candidate)
        parallel_layouts.set_checkpointing(model, candidate.gradient_checkpointing)
        batch = micro_batches(rows, fitted, backend, pad_id)[:1]

        def one_pass() -> int:
            train_step(model, batch, backend, device, precision, fitted.loss_chunk_tokens)
            return int(batch[0]["n_real"])

        return pass_speed(one_pass, lambda: model.zero_grad(set_to_none=True))

    chosen = fastest_plan(candidates, speed)
    timed = "; ".join(f"{t['micro_batch_tokens']} tokens{' + checkpointing' if t['gradient_checkpointing'] else ''}"
                      f": {t['tokens_per_s']} tok/s" for t in chosen.timings)
    print(f"[findap train] memory autotune: {timed}; keeping {chosen.micro_batch_tokens} tokens"
          f"{' with checkpointing' if chosen.gradient_checkpointing else ''}", file=sys.stderr, flush=True)
    return fitted_to(cfg, chosen), chosen


def fitted_to(cfg: TrainConfig, plan: MemoryPlan) -> TrainConfig:
    return cfg.model_copy(update={"micro_batch_tokens": plan.micro_batch_tokens,
                                  "gradient_checkpointing": plan.gradient_checkpointing,
                                  "loss_chunk_tokens": plan.loss_chunk_tokens})


def summarize(run: PreparedRun, phases: dict[str, dict], model_dir: Path, *, wall_s: float) -> dict:
    """The stage's summary from its phases' DONE summaries."""
    summary = {"phases": phases, "tokens": 0, "trained_tokens": 0, "steps": 0, "train_wall_s": 0.0}
    for done in phases.values():
        for key in ("tokens", "trained_tokens", "steps"):
            summary[key] += done[key]
        summary["train_wall_s"] += done["wall_s"]
    last = phases[run.phases[-1].name]
    stats = run.stats
    summary.update(
        model_dir=str(model_dir), attention=run.backend, memory_plan=run.memory_plan.to_json(), mode=run.cfg.mode,
        finetune=run.cfg.finetune,
        best_dev_loss=last["best_dev_loss"], select_on=last.get("select_on", "dev_loss"),
        best_score=last.get("best_score", last["best_dev_loss"]), wall_s=round(wall_s, 2),
        tokens_per_s=round(summary["tokens"] / max(summary["train_wall_s"], 1e-9), 1),
        packing_efficiency=round(min(p["packing_efficiency"] for p in phases.values()), 4),
        cpt_docs=stats.cpt_docs, it_docs=stats.it_docs, split_chunks=stats.chunks,
        truncated_it=stats.truncated, dropped_it=len(stats.dropped),
    )
    return summary


def run(recipe, ctx) -> dict:
    """Stage entry point: recipe.train + the curate stage's data -> runs/<run>/train/model."""
    data_dir = ctx.inputs.get("data")
    model_name = str(ctx.inputs.get("model") or recipe.model)
    return train_model(model_name, recipe.train, ctx.dir, data_dir=Path(data_dir) if data_dir else None,
                       seed=recipe.seed, device=recipe.device, precision=recipe.precision, log=ctx.log_metrics)
