"""`findap run`: the stage graph of a recipe.

    curate ──> train ──> distill ──> align ──> eval ──> report
    (texts,    (CPT+IT    (GenORM/    (DPO+NLL  (base vs  (tables,
     prompts)   model)     GenPRM)     model)    stages)   plots)

Each stage writes `runs/<name>/<stage>/` and finishes by writing DONE. A stage with DONE is skipped; one without
is (re)entered and resumes from its own checkpoints. A stage left out of the recipe hands its input through
(e.g. no train stage: distill samples from the base model). `findap run` runs every stage in its own process, so
the memory a stage used is back with the OS before the next starts (docs/memory.md).
"""
from __future__ import annotations

import gc
import importlib
import json
import multiprocessing
import os
import signal
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.table import Table

from findap.child_processes import die_with_parent, forked_children_die_with_this_process
from findap.host_memory import release_free_memory, reset_peak_memory
from findap.recipe import STAGES, Recipe, recipe_to_dict
from findap.runs import StageContext, read_done

console = Console(stderr=True)


def stage_function(stage: str) -> Callable[[Recipe, StageContext], dict]:
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
    """Run one stage in this process (skipped when its DONE exists, unless `force`); returns its DONE summary."""
    ctx = StageContext(run_dir=recipe.run_dir, name=stage, inputs=stage_inputs(recipe, stage))
    if not force and _skip_done(ctx.dir):
        return read_done(ctx.dir) or {}
    if force and ctx.is_done():
        (ctx.dir / "DONE").unlink()
    ctx.save_config(recipe_to_dict(recipe))
    console.rule(f"[bold]{stage}")
    reset_peak_memory()  # the DONE summary's peak is this stage's, also when several run in one process
    summary = stage_function(stage)(recipe, ctx)
    # hand what this stage freed back to the OS before the next starts (when stages share a process): glibc keeps
    # freed heap resident; after curating the real-data recipe that was 14.2 GB, 0.7 GB once trimmed.
    gc.collect()
    release_free_memory()
    return ctx.mark_done(summary or {})


def _skip_done(stage_dir: Path) -> bool:
    if read_done(stage_dir) is None:
        return False
    console.print(f"[dim]{stage_dir.name}: already done, skipping ({stage_dir / 'DONE'})[/dim]")
    return True


class StageError(RuntimeError):
    """A stage failed in its own process; the message carries the child's traceback and error."""


def run_stage_in_child(recipe: Recipe, stage: str, *, force: bool = False) -> dict:
    """`run_stage` in a fresh process (spawned, so it inherits no threads or CUDA state), which returns every page
    the stage touched to the OS when it exits: a pipeline's peak memory is its largest stage's, not their sum.
    DONE markers and resumption are run_stage's own; an error in the stage is raised here as StageError with the
    child's traceback, and a child killed by a signal (the kernel's out-of-memory killer) says so."""
    if not force and _skip_done(recipe.run_dir / stage):  # no process start for a finished stage
        return read_done(recipe.run_dir / stage) or {}
    spawn = multiprocessing.get_context("spawn")
    receive, send = spawn.Pipe(duplex=False)
    recipe_json = json.dumps(recipe_to_dict(recipe))
    child = spawn.Process(target=_stage_child, args=(recipe_json, stage, force, send, os.getpid()),
                          name=f"findap-{stage}")
    child.start()
    send.close()  # the child holds the only writer now: recv fails at once if it dies without answering
    try:
        reply = json.loads(receive.recv_bytes())
    except EOFError:
        reply = None
    finally:
        child.join()
        receive.close()
    if reply is None:
        raise StageError(f"stage '{stage}': its process ended without finishing ({_exit_reason(child.exitcode)}); "
                         f"DONE was not written, so `findap run` resumes the stage from its checkpoints")
    if "error" in reply:
        raise StageError(f"stage '{stage}' failed in its process:\n{reply['error']}")
    return reply["summary"]


def _stage_child(recipe_json: str, stage: str, force: bool, send, parent_pid: int) -> None:
    """The child's side: rebuild the recipe from JSON, run the stage, send back its summary or its error (as JSON)."""
    die_with_parent(parent_pid)  # a killed `findap run` takes its stage with it
    forked_children_die_with_this_process()  # and the stage's forked helpers with the stage
    try:
        summary = run_stage(Recipe.model_validate(json.loads(recipe_json)), stage, force=force)
        reply = {"summary": summary}
    except Exception:
        reply = {"error": traceback.format_exc().rstrip()}
    send.send_bytes(json.dumps(reply, default=str).encode("utf-8"))
    send.close()


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = ": the kernel's out-of-memory killer, or a kill" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exit code {exitcode}"


def run_recipe(
    recipe: Recipe, *, only: list[str] | None = None, force: bool = False, isolate: bool = True
) -> dict[str, dict]:
    """Run the recipe's stages in order, each in its own process (`isolate=False`: all in this one)."""
    t0 = time.time()
    results = {}
    for stage in STAGES:
        if stage not in recipe.stages or (only and stage not in only):
            continue
        run = run_stage_in_child if isolate else run_stage
        results[stage] = run(recipe, stage, force=force)
    print_summary(recipe, results, time.time() - t0)
    return results


def print_summary(recipe: Recipe, results: dict[str, dict], wall: float) -> None:
    table = Table(title=f"findap run {recipe.name}: {wall:.0f} s")
    table.add_column("stage")
    table.add_column("wall s", justify="right")
    table.add_column("peak RSS GB", justify="right")
    table.add_column("summary")
    for stage, summary in results.items():
        brief = {k: v for k, v in summary.items()
                 if k not in ("stage", "wall_s") and not k.startswith("peak_") and not isinstance(v, (dict, list))}
        peak = summary.get("peak_rss_gb")
        table.add_row(stage, f"{summary.get('wall_s', 0):.0f}", "-" if peak is None else f"{peak:.2f}",
                      ", ".join(f"{k}={_short(v)}" for k, v in list(brief.items())[:6]))
    console.print(table)
    peaks = [s["peak_rss_gb"] for s in results.values() if s.get("peak_rss_gb") is not None]
    if peaks:
        console.print(f"peak RSS: {max(peaks):.2f} GB (the largest stage's)")
    console.print(f"outputs: {Path(recipe.run_dir).resolve()}")


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


# ---- `--dry-run`: check a recipe's inputs without running anything ---------------------------------------------------
class PreflightError(ValueError):
    pass


def preflight(recipe: Recipe, stages: list[str], *, force: bool = False) -> list[str]:
    """What `stages` would do, one line each, after checking every input the recipe names: files the user listed
    must exist and task names must resolve (else PreflightError listing every problem). Outputs of earlier stages
    are reported as present or pending: they are written when those stages run."""
    lines, problems = [], []
    for stage in stages:
        section = getattr(recipe, stage, None)
        done = read_done(recipe.run_dir / stage) is not None
        state = ("done, skipped (--force reruns it)" if done and not force else
                 "disabled (enabled: false)" if section is not None and not section.enabled else
                 "reruns (--force)" if done else "runs")
        needs = []
        for kind, path, detail in _stage_inputs_to_check(recipe, stage):
            if kind == "problem":
                problems.append(f"{stage}: {detail}")
            elif kind == "data" and not Path(path).exists():
                problems.append(f"{stage}: {detail} {path} does not exist")
            elif kind == "upstream":
                needs.append(f"{path} ({'present' if Path(path).exists() else 'pending: ' + detail})")
        lines.append(f"{stage}: {state} -> {recipe.run_dir / stage}" + (f"; reads {', '.join(needs)}" if needs else ""))
    if problems:
        raise PreflightError("\n".join(problems))
    return lines


def _stage_inputs_to_check(recipe: Recipe, stage: str) -> list[tuple[str, str, str]]:
    """(kind, path, detail) per input: kind is data (must exist now), upstream (an earlier stage's output) or
    problem (detail says what is wrong)."""
    run = recipe.run_dir
    if stage == "curate":
        return _curate_inputs(recipe)
    if stage == "train":
        return [item for group in recipe.train.groups for item in _train_group_inputs(recipe, group)]
    if stage == "distill":
        return [("data", s.path, f"distill.sources[{s.kind}]:") for s in recipe.distill.sources if s.path]
    if stage == "align":
        if recipe.align.pairs:
            return [("data", recipe.align.pairs, "align.pairs:")]
        return [("upstream", str(run / "distill" / "pairs.jsonl"), "written by the distill stage")]
    if stage == "eval":
        from findap.eval.registry import resolve

        try:
            resolve(list(recipe.eval.tasks))
        except KeyError as e:
            return [("problem", "", f"eval.tasks: {e.args[0]}")]
    return []


def _curate_inputs(recipe: Recipe) -> list[tuple[str, str, str]]:
    from findap.curate.sources import CONVERTERS, resolve_location

    items = []
    for spec in recipe.curate.sources:
        converter = CONVERTERS.get(spec.converter_name)
        if converter is None:
            items.append(("problem", "", f"curate.sources[{spec.name}]: unknown converter "
                                         f"'{spec.converter_name}'; known: {', '.join(sorted(CONVERTERS))}"))
            continue
        location = resolve_location(spec, converter, recipe.curate.data_root)
        if not location.startswith(("hf:", "demo:")):
            items.append(("data", location, f"curate.sources[{spec.name}]:"))
    return items


def _train_group_inputs(recipe: Recipe, group) -> list[tuple[str, str, str]]:
    where = f"train.groups[{group.name}]"
    items = [("data", f, f"{where}.{kind}:") for kind in ("train", "dev") for f in getattr(group, kind)]
    if not group.train:
        if "curate" not in recipe.stages:
            items.append(("problem", "", f"{where}: no training files: list them under train, or add curate to "
                                         "the recipe's stages"))
        else:
            items.append(("upstream", str(recipe.run_dir / "curate" / group.name / "train.parquet"),
                          "written by the curate stage"))
    return items
