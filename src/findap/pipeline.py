"""`findap run`: the stage graph of a recipe.

    curate ──> train ──> distill ──> align ──> eval ──> report
    (texts,    (CPT+IT    (GenORM/    (DPO+NLL  (base vs  (tables,
     prompts)   model)     GenPRM)     model)    stages)   plots)

Each stage writes `runs/<name>/<stage>/` and finishes by writing DONE, which records the fingerprints of its inputs
(findap.freshness). A stage with DONE is skipped while those inputs are unchanged; when one changed (its recipe
section, a model it loads, an upstream stage's outputs, a data file) its outputs are cleared and it runs again,
with a line saying why, and so in turn does every stage that reads what it rewrote. A stage without DONE is
(re)entered and resumes from its own checkpoints, unless its inputs changed since it started. `force` clears a
stage's outputs, not only its marker. A stage left out of the recipe hands its input through (e.g. no train
stage: distill samples from the base model). `findap run` runs every stage in its own process, so the memory a
stage used is back with the OS before the next starts (docs/memory.md).
"""
from __future__ import annotations

import gc
import importlib
import json
import multiprocessing
import os
import shutil
import signal
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from rich.console import Console
from rich.table import Table

from findap.child_processes import die_with_parent, forked_children_die_with_this_process
from findap.freshness import changed_inputs, describe_change, input_fingerprints
from findap.host_memory import release_free_memory, reset_peak_memory
from findap.io import write_json
from findap.provenance import code_version
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
    """Run one stage in this process unless its DONE is current (same inputs; never with `force`); returns its DONE
    summary. `force`, or inputs that changed since the stage ran or started, clear its outputs first."""
    check_stage_inputs(recipe, stage)  # files the recipe names exist: nothing is written for a bad input
    ctx = StageContext(run_dir=recipe.run_dir, name=stage, inputs=stage_inputs(recipe, stage))
    inputs = input_fingerprints(recipe, stage)
    action, why = stage_action(recipe.run_dir / stage, inputs, force=force)
    if action == "skip":
        console.print(f"[dim]{why}[/dim]")
        return read_done(ctx.dir) or {}
    first_rank = os.environ.get("RANK", "0") == "0"  # under torchrun every rank runs this; one clears and records
    if action == "clear" and first_rank:
        console.print(f"[yellow]{why}[/yellow]")
        clear_stage(ctx.dir, keep_caches=not force, keep=() if force else SELF_CHECKING.get(stage, ()))
    elif action == "resume" and first_rank:
        console.print(why)
    ctx.begin()
    if first_rank:
        ctx.save_config(recipe_to_dict(recipe))
        write_json(ctx.dir / STARTED_WITH, inputs)
    console.rule(f"[bold]{stage}")
    reset_peak_memory()  # the DONE summary's peak is this stage's, also when several run in one process
    summary = stage_function(stage)(recipe, ctx)
    # hand what this stage freed back to the OS before the next starts (when stages share a process): glibc keeps
    # freed heap resident (measured after curation: docs/results.md, Curation, "Smaller measurements").
    gc.collect()
    release_free_memory()
    return ctx.mark_done({**(summary or {}), "inputs": inputs, "code": code_version()})


STARTED_WITH = "inputs.json"  # the inputs a stage started with: a killed stage resumes only if they still hold


def stage_action(stage_dir: Path, inputs: dict, *, force: bool = False) -> tuple[str, str]:
    """("skip" | "run" | "resume" | "clear", why): skip a finished stage whose inputs are unchanged, run one that
    never started, resume one that was interrupted with the same inputs, clear and rerun one whose inputs changed
    since it finished or started, or that is forced."""
    stage = stage_dir.name
    done = read_done(stage_dir)
    if force:
        return ("clear", f"{stage}: --force, clearing its outputs and running it again") if stage_dir.exists() \
            else ("run", "")
    if done is not None:
        changed = changed_inputs(done.get("inputs"), inputs)
        if changed is None:
            return "skip", (f"{stage}: already done, skipping; it predates input tracking, so a changed recipe or "
                            f"model is not noticed (--force {stage} reruns it)")
        if not changed:
            return "skip", f"{stage}: already done with these inputs, skipping ({stage_dir / 'DONE'})"
        return "clear", describe_change(stage, changed)
    started = stage_dir / STARTED_WITH
    if started.exists():
        changed = changed_inputs(json.loads(started.read_text(encoding="utf-8")), inputs)
        if changed:
            return "clear", describe_change(stage, changed).replace("since it ran", "since it was interrupted")
        return "resume", f"{stage}: resuming where it was interrupted (its inputs are unchanged)"
    return "run", ""


# Folders a stage checks itself when it runs again, kept when its inputs change (not on --force): stage 1's phase
# folders each carry the key of what their weights follow from (findap.train.stage.phase_keys), so a recipe that
# adds or retunes a later curriculum group keeps the groups before it.
SELF_CHECKING = {"train": ("groups",)}


def clear_stage(stage_dir: Path, *, keep_caches: bool, keep: tuple[str, ...] = ()) -> None:
    """Delete a stage's outputs (DONE first, so a kill halfway never leaves a finished-looking stage), but for the
    folders named in `keep`. Request caches (`*.sqlite` at the top) are kept unless asked otherwise: their keys hold
    the model's content fingerprint and the full request, so no entry can answer for other weights or prompts."""
    (stage_dir / "DONE").unlink(missing_ok=True)
    for entry in stage_dir.iterdir() if stage_dir.exists() else []:
        if keep_caches and entry.is_file() and entry.suffix in (".sqlite", ".sqlite-wal", ".sqlite-shm"):
            continue
        if entry.name in keep and entry.is_dir():
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


# stage -> the stages of the same recipe whose outputs it reads (when they are among the recipe's stages)
UPSTREAM = {"train": ["curate"], "distill": ["train"], "align": ["distill", "train"], "report": ["eval"]}


def missing_upstream(recipe: Recipe, stage: str) -> str | None:
    """For a single-stage command: the message naming the earlier stage to run first, when the recipe runs a stage
    whose outputs this one reads and that stage has not finished (its inputs would silently be something else)."""
    for upstream in UPSTREAM.get(stage, []):
        if upstream == "distill" and recipe.align.pairs:
            continue  # align reads the recipe's own pairs file
        section = getattr(recipe, upstream, None)
        enabled = section is None or getattr(section, "enabled", True)
        if upstream in recipe.stages and enabled and read_done(recipe.run_dir / upstream) is None:
            return (f"{stage}: reads the {upstream} stage's outputs, and {recipe.run_dir / upstream} is not finished; "
                    f"run `findap {upstream} RECIPE` first (or `findap run RECIPE` for every stage in order)")
    return None


class StageError(RuntimeError):
    """A stage failed in its own process; the message carries the child's traceback and error."""


def run_stage_in_child(recipe: Recipe, stage: str, *, force: bool = False) -> dict:
    """`run_stage` in a fresh process (spawned, so it inherits no threads or CUDA state), which returns every page
    the stage touched to the OS when it exits: a pipeline's peak memory is its largest stage's, not their sum.
    DONE markers and resumption are run_stage's own; an error in the stage is raised here as StageError with the
    child's traceback, and a child killed by a signal (the kernel's out-of-memory killer) says so."""
    check_stage_inputs(recipe, stage)  # a missing input file: one line, no process started
    if not force:  # no process start for a finished stage whose inputs are unchanged
        action, why = stage_action(recipe.run_dir / stage, input_fingerprints(recipe, stage))
        if action == "skip":
            console.print(f"[dim]{why}[/dim]")
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
        from findap.errors import RuntimeFailure

        raise RuntimeFailure(f"stage '{stage}': its process ended without finishing ({_exit_reason(child.exitcode)})",
                             "DONE was not written, so the same command resumes the stage from its checkpoints")
    if "expected" in reply:  # bad input or a runtime failure the stage named: one line, the child's exit code
        from findap.errors import RuntimeFailure, UsageError

        kind = UsageError if reply["code"] == 2 else RuntimeFailure
        raise kind(f"{stage}: {reply['expected']}")
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
    except KeyboardInterrupt:  # Ctrl-C reached the whole process group: the parent says where it stopped
        return
    except Exception as exc:
        from findap.errors import debug_enabled, describe

        known = None if debug_enabled() else describe(exc)
        reply = ({"expected": known[0], "code": known[1]} if known is not None
                 else {"error": traceback.format_exc().rstrip()})
    send.send_bytes(json.dumps(reply, default=str).encode("utf-8"))
    send.close()


def _exit_reason(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name
        hint = ": the kernel's out-of-memory killer, or a kill" if name == "SIGKILL" else ""
        return f"killed by {name}{hint}"
    return f"exit code {exitcode}"


def run_recipe(
    recipe: Recipe, *, only: list[str] | None = None, force: list[str] | bool = (), isolate: bool = True
) -> dict[str, dict]:
    """Run the recipe's stages in order, each in its own process (`isolate=False`: all in this one). `force`: the
    stages to clear and rerun (True: all of them)."""
    t0 = time.time()
    results = {}
    for stage in STAGES:
        if stage not in recipe.stages or (only and stage not in only):
            continue
        run = run_stage_in_child if isolate else run_stage
        results[stage] = run(recipe, stage, force=_forced(force, stage))
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


def _one_line_per_problem(problems: list[str]) -> str:
    """`stage: problem` lines, a problem several stages share (the base model's folder) said once for all; a
    problem of the whole run (the data root) is said once, first, without a stage."""
    stages_of: dict[str, list[str]] = {}
    for line in dict.fromkeys(problems):
        if line.startswith("data root "):
            stages_of.setdefault(line, [])
            continue
        stage, problem = line.split(": ", 1)
        stages_of.setdefault(problem, []).append(stage)
    ordered = sorted(stages_of.items(), key=lambda item: bool(item[1]))
    return "\n".join(f"{', '.join(stages)}: {problem}" if stages else problem for problem, stages in ordered)


def _forced(force: list[str] | bool, stage: str) -> bool:
    """Whether `force` (True: every stage; else the names of the stages to clear and rerun) names `stage`."""
    return force is True or stage in (force or ())


def _input_problems(recipe: Recipe, stage: str, items: list[tuple[str, str, str]]) -> list[str]:
    """`stage: problem` lines for _stage_inputs_to_check's items: problems, and data files that do not exist. When
    the data root itself is missing, its files are one line that says how to point at it, not one line each."""
    root = recipe.data_dir
    root_problem = root.problem()
    lines = []
    for kind, path, detail in items:
        if kind == "problem":
            lines.append(f"{stage}: {detail}")
        elif kind == "data" and not Path(path).exists():
            lost_root = root_problem is not None and Path(path).is_relative_to(root.path)
            lines.append(root_problem if lost_root else f"{stage}: {detail} {path} does not exist")
    return list(dict.fromkeys(lines))


def check_stage_inputs(recipe: Recipe, stage: str) -> None:
    """Raise PreflightError naming every input file the recipe lists for `stage` that does not exist, and every
    other problem preflight finds (unknown converters and task names)."""
    problems = _input_problems(recipe, stage, _stage_inputs_to_check(recipe, stage))
    if problems:
        raise PreflightError(_one_line_per_problem(problems))


def preflight(recipe: Recipe, stages: list[str], *, force: list[str] | bool = ()) -> list[str]:
    """What `stages` would do, one line each, after checking every input the recipe names: files the user listed
    must exist and task names must resolve (else PreflightError listing every problem). Outputs of earlier stages
    are reported as present or pending: they are written when those stages run. A finished stage is reported as
    skipped only while its recorded inputs still hold."""
    lines, problems = [], []
    rerunning: list[str] = []
    for stage in stages:
        section = getattr(recipe, stage, None)
        forced = _forced(force, stage)
        if not getattr(section, "enabled", True):
            state = "disabled (enabled: false)"
        else:
            action, why = stage_action(recipe.run_dir / stage, input_fingerprints(recipe, stage), force=forced)
            state = {"skip": "done, skipped (inputs unchanged; --force %s reruns it)" % stage,
                     "run": "runs", "resume": "resumes where it was interrupted",
                     "clear": f"reruns ({why.split(': ', 1)[-1]})"}[action]
            if action == "skip" and rerunning:
                state = f"done; reruns if {', '.join(rerunning)} rewrites what it reads"
            if action != "skip":
                rerunning.append(stage)
        items = _stage_inputs_to_check(recipe, stage)
        problems += _input_problems(recipe, stage, items)
        needs = [f"{path} ({'present' if Path(path).exists() else 'pending: ' + detail})"
                 for kind, path, detail in items if kind == "upstream"]
        lines.append(f"{stage}: {state} -> {recipe.run_dir / stage}" + (f"; reads {', '.join(needs)}" if needs else ""))
    if problems:
        raise PreflightError(_one_line_per_problem(problems))
    return lines


def _stage_inputs_to_check(recipe: Recipe, stage: str) -> list[tuple[str, str, str]]:
    """(kind, path, detail) per input: kind is data (must exist now), upstream (an earlier stage's output) or
    problem (detail says what is wrong)."""
    from findap.models import device_problem, model_problem  # torch comes with it: not on the CLI's import path

    models = _models_to_check(recipe, stage)
    problems = [("problem", "", f"{field}: {why}") for field, name in models
                for why in [model_problem(name)] if why is not None]
    if stage != "report" and (why := device_problem(recipe.device)):
        problems.append(("problem", "", f"device: {why}"))
    if why := _unwritable(recipe.run_dir):
        problems.append(("problem", "", f"runs_dir: {why}"))
    return problems + _files_to_check(recipe, stage)


def _unwritable(folder: Path) -> str | None:
    """Why `folder` cannot be created and written, judged without creating it (a dry run writes nothing)."""
    folder = Path(folder).expanduser().absolute()
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        return f"{existing} is a file, so {folder} cannot be created"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"{existing} is not writable, so {folder} cannot be created"
    return None


def _models_to_check(recipe: Recipe, stage: str) -> list[tuple[str, str]]:
    """(recipe field, model) of the models a stage loads that the recipe names directly."""
    base = [("model", recipe.model)]
    return {"curate": base, "train": base, "distill": base if "train" not in recipe.stages else [],
            "align": [("align.model", recipe.align.model)] if recipe.align.model else
                     (base if "train" not in recipe.stages else []),
            "eval": (base if "base" in recipe.eval.include else []) +
                    [(f"eval.models.{label}", m) for label, m in recipe.eval.models.items()
                     if not _written_by_runs(recipe, m)]}.get(stage, [])


def _written_by_runs(recipe: Recipe, model: str) -> bool:
    """A model under the runs folder is a stage's output (a sweep evaluates its recipes' models): it exists once
    that stage has run."""
    runs = Path(recipe.runs_dir).expanduser().resolve()
    return Path(model).expanduser().resolve().is_relative_to(runs)


def _files_to_check(recipe: Recipe, stage: str) -> list[tuple[str, str, str]]:
    run = recipe.run_dir
    if stage == "curate":
        return _curate_inputs(recipe)
    if stage == "train":
        return [item for group in recipe.train.groups for item in _train_group_inputs(recipe, group)]
    if stage == "distill":
        return [("data", str(recipe.data_dir.resolve(s.path)), f"distill.sources[{s.kind}]:")
                for s in recipe.distill.sources if s.path]
    if stage == "align":
        if recipe.align.pairs:
            return [("data", recipe.align.pairs, "align.pairs:")]
        return [("upstream", str(run / "distill" / "pairs.jsonl"), "written by the distill stage")]
    if stage == "eval":
        from findap.eval.registry import resolve

        try:
            specs = resolve(list(recipe.eval.tasks))
        except KeyError as e:
            return [("problem", "", f"eval.tasks: {e.args[0]}")]
        # a set naming a task the stage does not score would be left out of the report without a word
        scored = {spec.name for spec in specs}
        unscored = [f"eval.task_sets.{name}: {task!r} is not among eval.tasks, so the set could not be shown"
                    for name, tasks in recipe.eval.task_sets.items() for task in tasks if task not in scored]
        if unscored:
            return [("problem", "", unscored[0])]
        # tasks read from the data root need it to exist (hub-only and shipped demo tasks do not)
        from findap.eval.task import reads_data_root

        local = [spec.name for spec in specs if reads_data_root(spec)]
        if local:
            return [("data", str(recipe.data_dir.path), f"eval.tasks ({', '.join(local)}): data root")]
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
        location = resolve_location(spec, converter, recipe.data_dir.path)
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
