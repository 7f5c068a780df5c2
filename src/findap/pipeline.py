"""`findap run`: the stage graph of a recipe.

    curate ──> train ──> distill ──> align ──> eval ──> report
    (texts,    (CPT+IT    (GenORM/    (DPO+NLL  (base vs  (tables,
     prompts)   model)     GenPRM)     model)    stages)   plots)

Each stage writes `runs/<name>/<stage>/` and finishes by writing DONE. A stage with DONE is skipped; one without
is (re)entered and resumes from its own checkpoints. A stage left out of the recipe hands its input through
(e.g. no train stage: distill samples from the base model).
"""
from __future__ import annotations

import gc
import importlib
import time
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.table import Table

from findap.host_memory import release_free_memory
from findap.recipe import STAGES, Recipe, recipe_to_dict
from findap.runs import StageContext, read_done

console = Console(stderr=True)


def stage_function(stage: str) -> Callable[[Recipe, StageContext], dict]:
    if stage == "report":
        from findap.eval.report import report_stage

        return report_stage
    return importlib.import_module(f"findap.{stage}.stage").run


def model_dirs(recipe: Recipe) -> dict[str, str]:
    """The models of this run, by label, that exist so far: the base model and each stage's output."""
    models = {"base": recipe.model}
    for label, stage in (("cpt_it", "train"), ("pa", "align")):
        d = recipe.run_dir / stage / "model"
        if stage in recipe.stages and (d / "config.json").exists():
            models[label] = str(d)
    return models


def stage_inputs(recipe: Recipe, stage: str) -> dict[str, Any]:
    run = recipe.run_dir
    latest = model_dirs(recipe)
    policy = latest.get("cpt_it", recipe.model)
    return {
        "curate": {},
        "train": {"data": run / "curate" if "curate" in recipe.stages else None, "model": recipe.model},
        "distill": {"policy": policy},
        "align": {"pairs": run / "distill", "model": policy},
        "eval": {"models": latest},
        "report": {"runs": [run], "eval": run / "eval"},
    }[stage]


def run_stage(recipe: Recipe, stage: str, *, force: bool = False) -> dict:
    ctx = StageContext(run_dir=recipe.run_dir, name=stage, inputs=stage_inputs(recipe, stage))
    if ctx.is_done() and not force:
        console.print(f"[dim]{stage}: already done, skipping ({ctx.dir / 'DONE'})[/dim]")
        return read_done(ctx.dir) or {}
    if force and ctx.is_done():
        (ctx.dir / "DONE").unlink()
    ctx.save_config(recipe_to_dict(recipe))
    console.rule(f"[bold]{stage}")
    summary = stage_function(stage)(recipe, ctx)
    # Stages run in one process: hand what this one freed back to the OS before the next starts. glibc keeps
    # freed heap resident; after curating the real-data recipe that was 14.2 GB, 0.7 GB once trimmed, and the
    # stages after it ran out of the machine's 24 GB.
    gc.collect()
    release_free_memory()
    return ctx.mark_done(summary or {})


def run_recipe(recipe: Recipe, *, only: list[str] | None = None, force: bool = False) -> dict[str, dict]:
    t0 = time.time()
    results = {}
    for stage in STAGES:
        if stage not in recipe.stages or (only and stage not in only):
            continue
        results[stage] = run_stage(recipe, stage, force=force)
    print_summary(recipe, results, time.time() - t0)
    return results


def print_summary(recipe: Recipe, results: dict[str, dict], wall: float) -> None:
    table = Table(title=f"findap run {recipe.name}: {wall:.0f} s")
    table.add_column("stage")
    table.add_column("wall s", justify="right")
    table.add_column("summary")
    for stage, summary in results.items():
        brief = {k: v for k, v in summary.items() if k not in ("stage", "wall_s") and not isinstance(v, (dict, list))}
        table.add_row(stage, f"{summary.get('wall_s', 0):.0f}", ", ".join(f"{k}={_short(v)}" for k, v in list(brief.items())[:6]))
    console.print(table)
    console.print(f"outputs: {Path(recipe.run_dir).resolve()}")


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)
