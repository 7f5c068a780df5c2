"""The `findap` command line: one sub-command per stage, plus run, chat, serve and models."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional, get_args

import typer
from rich.console import Console
from typer.core import TyperGroup

from findap.engines.config import ENGINE_KINDS, Precision
from findap.engines.options import CHAT_FLAGS, SERVE_FLAGS
from findap.engines.options import option as engine_option
from findap.eval.config import EVAL_ENGINE_FLAGS, EVAL_JUDGE_FLAGS

console = Console(stderr=True)
# commands that pick up where a killed or interrupted run stopped when run again
RESUMABLE = {"curate", "train", "distill", "align", "eval", "run", "sweep"}


class _Findap(TyperGroup):
    """The `findap` command group, which holds every sub-command to the error contract (findap.errors): an expected
    failure prints one short message and exits 2 (usage or input) or 1 (runtime), Ctrl-C says where it stopped and
    exits 130, and only a bug shows a traceback (any failure does with --debug or FINDAP_DEBUG=1)."""

    def parse_args(self, ctx, args):
        # --debug is a global option, also accepted after the sub-command (`findap run r.yaml --debug`); not after
        # `--`, where arguments are no longer options
        end = args.index("--") if "--" in args else len(args)
        if "--debug" in args[1:end]:
            args = ["--debug", *[a for i, a in enumerate(args) if not (a == "--debug" and i < end)]]
        ctx.meta["findap.args"] = [a for a in args if a != "--debug"]
        return super().parse_args(ctx, args)

    def invoke(self, ctx):
        from typer._click.exceptions import ClickException, NoArgsIsHelpError

        from findap.errors import INTERRUPTED, debug_enabled

        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort):
            raise
        except NoArgsIsHelpError:  # `findap demo`: the help text, not an error
            raise
        except ClickException as e:  # a wrong flag or argument, found by the parser or raised as BadParameter
            raise typer.Exit(_usage_error(e))
        except BrokenPipeError as e:
            if not _stdout_gone():
                raise typer.Exit(_failed(e, debug=bool(ctx.params.get("debug")) or debug_enabled()))
            raise typer.Exit(141)  # what a shell reports for a writer its reader left (128 + SIGPIPE)
        except KeyboardInterrupt as e:
            if ctx.params.get("debug") or debug_enabled():
                _traceback(e)
            _error(_interrupted(ctx, e))
            raise typer.Exit(INTERRUPTED)
        except Exception as e:
            raise typer.Exit(_failed(e, debug=bool(ctx.params.get("debug")) or debug_enabled()))


def _stdout_gone() -> bool:
    """Whether standard output's reader went away (`findap eval --help | head`); if so, later writes (Python's own
    flush at exit included) go nowhere instead of raising again: a reader that stops early is no error of ours."""
    import os
    import select

    try:  # a pipe's write end whose readers are all gone polls as an error
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        gone = any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no poll (Windows), or stdout is no file
        return False
    if gone:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return gone


def _usage_error(e) -> int:
    """A parser error in two lines at most (click's own layout takes five): the problem, and where help is."""
    _error(f"error: {e.format_message()}")
    command = getattr(getattr(e, "ctx", None), "command_path", None)
    if command:
        console.print(f"(see {command} --help)", markup=False, highlight=False, soft_wrap=True)
    return e.exit_code


def _failed(e: Exception, debug: bool) -> int:
    from findap.errors import FAILURE, describe

    known = describe(e)
    if known is None:
        _traceback(e)
        _error(f"findap: internal error, a bug in findap rather than a problem with your input: "
               f"{type(e).__name__}: {_first_line(e)}. Please report it with the traceback above.")
        return FAILURE
    message, code = known
    if debug:
        _traceback(e)
    _error(f"error: {message}")
    return code


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else "(no message)"


def _traceback(e: BaseException) -> None:
    import traceback

    sys.stderr.write("".join(traceback.format_exception(e)))
    sys.stderr.flush()


def _interrupted(ctx, e: KeyboardInterrupt) -> str:
    """Where the interrupt stopped the command and how to go on: the stage being run (read from the frames it
    interrupted) and, for commands that resume, the command line to run again."""
    import shlex

    stage, run_dir = _stopped_in(e.__traceback__)
    args = ctx.meta.get("findap.args") or []
    command = args[0] if args else ctx.invoked_subcommand
    where = f" in stage {stage}" + (f" ({run_dir})" if run_dir else "") if stage else ""
    if command in RESUMABLE:
        return (f"interrupted{where}; finished stages and checkpoints are kept: run the same command to resume: "
                f"findap {shlex.join(args)}")
    return f"interrupted{where}"


def _stopped_in(tb) -> tuple[Optional[str], Optional[str]]:
    """(stage, run directory) of the innermost findap frame that was running a stage, or (None, None)."""
    import traceback

    stage = run_dir = None
    for frame, _ in traceback.walk_tb(tb):
        if not str(frame.f_globals.get("__name__", "")).startswith("findap"):
            continue
        local = frame.f_locals
        if isinstance(local.get("stage"), str):
            stage = local["stage"]
            found = getattr(local.get("recipe"), "run_dir", None)
            run_dir = str(found) if found is not None else run_dir
    return stage, run_dir


app = typer.Typer(
    cls=_Findap,
    help="findap: domain-adaptive post-training of LLMs (FinDAP). Curate -> train (CPT+IT) -> distill -> "
    "align (DPO+NLL) -> eval -> report, driven by one YAML recipe.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global_options(
    debug: bool = typer.Option(False, "--debug", help="show the Python traceback of any failure (also: environment "
                               "variable FINDAP_DEBUG=1)"),
):
    """findap: domain-adaptive post-training of LLMs (FinDAP)."""  # --debug is read in _Findap.invoke


RECIPE = typer.Argument(..., help="recipe YAML, e.g. recipes/demo.yaml", exists=True, dir_okay=False)
SET = typer.Option(None, "--set", "-s", help="override a recipe value: --set seed=1, --set train.groups.0.lr=1e-5, "
                   "--set 'train.groups.*.lr=1e-5' (list items by index or *; values are YAML; repeatable)")
FORCE = typer.Option(False, "--force", help="clear the stage's outputs and run it again, even when it is done with "
                     "the same inputs")
DRY_RUN = typer.Option(False, "--dry-run", help="validate the recipe, overrides and input files, print what would "
                       "run, and stop")


def _error(message: str) -> None:
    """Print an error as written: no rich markup (`train.groups[g]` is not a tag), no wrapping of long paths."""
    console.print(message, style="red", markup=False, soft_wrap=True)


def _load(recipe_path: Path, overrides: Optional[List[str]]):
    from findap.recipe import load_recipe

    return load_recipe(recipe_path, overrides or [])  # a RecipeError is one line, exit 2 (the error contract)


def _dry_run(recipe, stages: list[str], force, overrides: Optional[List[str]] = None) -> None:
    from findap.pipeline import preflight

    lines = preflight(recipe, stages, force=force)  # True: every stage listed (a stage command's --force)
    typer.echo(f"recipe {recipe.name!r} is valid; dry run, nothing started:")
    if overrides:
        typer.echo(f"  overrides: {' '.join(overrides)}")
    for line in lines:
        typer.echo(f"  {line}")


def _stage(stage: str, recipe_path: Path, overrides, force: bool, dry_run: bool = False) -> None:
    import time

    from findap.pipeline import missing_upstream, print_summary, run_stage

    recipe = _load(recipe_path, overrides)
    if dry_run:
        return _dry_run(recipe, [stage], force, overrides)
    missing = missing_upstream(recipe, stage)
    if missing:
        _error(missing)
        raise typer.Exit(2)
    started = time.time()
    summary = run_stage(recipe, stage, force=force)
    print_summary(recipe, {stage: summary}, time.time() - started)


def _given(ctx: typer.Context) -> dict[str, str]:
    """Parameters set on the command line (not left at their defaults), by name -> how the user wrote them."""
    def given(name: str) -> bool:  # typer vendors click: compare the ParameterSource by name
        source = ctx.get_parameter_source(name)
        return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

    return {p.name: (p.opts[0] if p.opts and p.opts[0].startswith("-") else p.name.upper())
            for p in ctx.command.params if given(p.name)}


def _refuse(given: dict[str, str], names: set[str], why: str) -> None:
    """Flags that would be silently ignored in this combination are errors instead."""
    from findap.errors import UsageError

    offending = [flag for name, flag in given.items() if name in names]
    if offending:
        raise UsageError(f"{', '.join(offending)}: {why}")


@app.command()
def curate(recipe: Path = RECIPE, set: Optional[List[str]] = SET, force: bool = FORCE, dry_run: bool = DRY_RUN):
    """FinTrain: build the CPT texts and IT prompts of the recipe's mixtures (judge filter, dedup, decontamination)."""
    _stage("curate", recipe, set, force, dry_run)


@app.command()
def train(recipe: Path = RECIPE, set: Optional[List[str]] = SET, force: bool = FORCE, dry_run: bool = DRY_RUN):
    """Stage 1: joint CPT+IT training with packing, cross-document masking and dev-loss selection."""
    _stage("train", recipe, set, force, dry_run)


@app.command()
def distill(recipe: Path = RECIPE, set: Optional[List[str]] = SET, force: bool = FORCE, dry_run: bool = DRY_RUN):
    """Stage 2 data: preference pairs from Trajectory-GenORM and Trajectory-GenPRM."""
    _stage("distill", recipe, set, force, dry_run)


@app.command()
def align(recipe: Path = RECIPE, set: Optional[List[str]] = SET, force: bool = FORCE, dry_run: bool = DRY_RUN):
    """Stage 2 training: DPO + NLL on the distilled preference pairs."""
    _stage("align", recipe, set, force, dry_run)


@app.command(name="eval")
def eval_(
    ctx: typer.Context,
    recipe: Optional[Path] = typer.Argument(None, help="recipe YAML (evaluates its models); or use --model"),
    model: Optional[List[str]] = typer.Option(None, "--model", "-m", help="model name, hub id or dir (repeatable)"),
    tasks: Optional[str] = typer.Option(None, "--tasks", "-t", help="comma-separated tasks, groups or YAML paths "
                                        "(default: the recipes' eval.tasks default, all with local data)"),
    mode: str = typer.Option("direct", help="direct, cot, loglik (plain prompt, labels ranked by log-likelihood), "
                             "both (direct+cot), all, or a comma list such as direct,loglik"),
    limit: Optional[int] = typer.Option(None, min=1, help="at most this many examples per task"),
    split: Optional[str] = typer.Option(None, help="dev (model selection) or unseen (reports); default: each task's"),
    few_shot: Optional[int] = typer.Option(None, min=0, help="override every task's few-shot count"),
    prefer: str = typer.Option("local", help="local files, hub, or auto (local, else the hub)"),
    # engine flags: made from the recipe's eval.engine and eval.judge.engine fields (findap.engines.options)
    engine: str = engine_option(EVAL_ENGINE_FLAGS["engine"]),
    base_url: Optional[str] = engine_option(EVAL_ENGINE_FLAGS["base_url"]),
    api_key_env: str = engine_option(EVAL_ENGINE_FLAGS["api_key_env"]),
    batch_size: int = engine_option(EVAL_ENGINE_FLAGS["batch_size"]),
    max_batch_tokens: int = engine_option(EVAL_ENGINE_FLAGS["max_batch_tokens"]),
    max_length: int = engine_option(EVAL_ENGINE_FLAGS["max_length"]),
    device: Optional[str] = engine_option(EVAL_ENGINE_FLAGS["device"]),
    precision: Optional[str] = engine_option(EVAL_ENGINE_FLAGS["precision"]),
    judge_model: Optional[str] = engine_option(EVAL_JUDGE_FLAGS["judge_model"]),
    judge_engine: str = engine_option(EVAL_JUDGE_FLAGS["judge_engine"]),
    judge_base_url: Optional[str] = engine_option(EVAL_JUDGE_FLAGS["judge_base_url"]),
    judge_key_env: str = engine_option(EVAL_JUDGE_FLAGS["judge_key_env"]),
    list_tasks: bool = typer.Option(False, "--list", help="list every task: whether it runs here (local file, hub "
                                    "mirror or cache, or why not), n per split and its source; then the groups"),
    out: Path = typer.Option(Path("runs/eval"), help="output directory (with --model)"),
    allow_skips: bool = typer.Option(False, "--allow-skips", help="accept a partial table: tasks whose data cannot "
                                     "be had here are listed instead of failing the command"),
    set: Optional[List[str]] = SET,
    force: bool = typer.Option(False, "--force", help="score every task anew: finished results and cached requests "
                               "are not reused"),
    dry_run: bool = DRY_RUN,
):
    """FinEval: score models on tasks (by capability x domain x similar/novel).

    With a RECIPE, the task, engine and judge flags override its eval section (--limit 5 = --set eval.limit=5).
    With --model, they configure a standalone evaluation written under --out.
    """
    given = _given(ctx)
    from findap.eval.stage import parse_modes

    try:
        parse_modes(mode)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--mode")
    for flag, value, allowed in (("--split", split, ("dev", "unseen", None)), ("--prefer", prefer, PREFER),
                                 ("--engine", engine, ENGINES), ("--judge-engine", judge_engine, ENGINES),
                                 ("--precision", precision, (None, *PRECISIONS))):
        if value not in allowed:
            raise typer.BadParameter(f"{value!r}: choose {', '.join(a for a in allowed if a)}", param_hint=flag)
    if list_tasks:
        _refuse(given, given.keys() - {"list_tasks", "prefer"}, "--list only lists the tasks (and takes --prefer); "
                "drop the other arguments")
        return _list_tasks(prefer)
    if recipe is not None:
        _refuse(given, {"model", "out"}, "only with --model, not with a recipe: a recipe evaluates its own models "
                "(add others with --set eval.models.LABEL=PATH) and writes to <runs_dir>/<name>/eval")
        return _stage("eval", recipe, [*_eval_overrides(ctx, given), *(set or [])], force, dry_run)
    _refuse(given, {"set", "dry_run"}, "only with a RECIPE (they act on a recipe's eval stage)")
    if not model:
        from findap.errors import UsageError

        raise UsageError("give a recipe or at least one --model", "e.g. findap eval --model smollm2-135m-instruct "
                         "--tasks fpb, or findap eval recipes/demo.yaml")
    if not judge_model:
        _refuse(given, EVAL_JUDGE_FLAGS.keys() - {"judge_model"}, "configure the judge: add --judge-model")
    from findap.engines.options import config_from
    from findap.eval.config import EvalJudgeConfig
    from findap.eval.stage import TasksSkipped, evaluate_models, judge_outputs, print_scores, refuse_skips, \
        skipped_tasks

    task_names, labels = _standalone_inputs(tasks, model, out)
    # the engine settings of the flags given (the others: the config's defaults), checked before any model loads
    engine_config = config_from(EVAL_ENGINE_FLAGS, ctx.params, given.keys())
    judge = EvalJudgeConfig(engine=config_from(EVAL_JUDGE_FLAGS, ctx.params, given.keys())) if judge_model else None
    results = evaluate_models(list(labels.values()), tasks=task_names, mode=mode, limit=limit, out_dir=out,
                              role=split, few_shot=few_shot, prefer=prefer, engine=engine_config, force=force)
    if judge is not None:
        for label in labels:
            judge_outputs(out / label.replace("/", "--"), judge)
    print_scores(results, console)
    if not allow_skips:
        try:
            refuse_skips(skipped_tasks(results), "--allow-skips")
        except TasksSkipped as e:
            _error(str(e))
            raise typer.Exit(1)


def _list_tasks(prefer: str) -> None:
    """`findap eval --list`: every task, whether it runs here and from where, then the groups."""
    from findap.eval.availability import all_task_availability, availability_table
    from findap.eval.registry import groups

    groups(strict=True)  # a broken task YAML is an error naming its file, not a task quietly left out
    typer.echo(availability_table(all_task_availability(prefer)))
    typer.echo("")
    for name, members in sorted(groups().items()):
        typer.echo(f"{name} ({len(members)}): {', '.join(members)}")


def _standalone_inputs(tasks: str | None, models: list[str], out: Path) -> tuple[list[str], dict[str, str]]:
    """(task names, {model: label}) of `findap eval --model ...`, every input checked before any model loads: the
    task names, the model folders, their labels and the output folder (an unknown name costs no minutes)."""
    from findap.eval.config import DEFAULT_TASKS
    from findap.eval.registry import check_task_names
    from findap.eval.stage import unique_labels

    task_names = [t for t in tasks.split(",") if t.strip()] if tasks is not None else list(DEFAULT_TASKS)
    if not task_names:
        raise typer.BadParameter("names no task: give task names, groups or YAML paths, e.g. --tasks fpb,fomc "
                                 "(`findap eval --list` lists them)", param_hint="--tasks")
    check_task_names(task_names)
    for name in models:
        _check_model_arg(name, "--model")
    try:
        labels = unique_labels(models)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--model")
    _writable_folder(out, "--out")
    return task_names, labels


def _writable_folder(folder: Path, flag: str) -> None:
    """Create `folder` now, before a model loads: a path that cannot be written is one line naming the flag."""
    from findap.errors import UsageError

    try:
        Path(folder).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UsageError(f"{flag} {folder}: cannot create this folder ({e.strerror or e})") from None


PREFER = ("local", "hub", "auto")
ENGINES = ENGINE_KINDS
PRECISIONS = get_args(Precision)
# `findap eval RECIPE` flags -> the recipe field each one sets (the engine flags: their eval.engine and
# eval.judge.engine fields)
EVAL_FLAG_FIELDS = {"tasks": "eval.tasks", "mode": "eval.modes", "limit": "eval.limit", "split": "eval.split",
                    "few_shot": "eval.few_shot", "prefer": "eval.prefer", "allow_skips": "eval.allow_skips",
                    **{param: f"eval.engine.{flag.name}" for param, flag in EVAL_ENGINE_FLAGS.items()},
                    **{param: f"eval.judge.engine.{flag.name}" for param, flag in EVAL_JUDGE_FLAGS.items()}}


def _eval_overrides(ctx: typer.Context, given: dict[str, str]) -> list[str]:
    """The eval flags the user gave, as recipe overrides (JSON values are YAML, so they parse back exactly)."""
    from findap.eval.stage import parse_modes

    overrides = []
    for name, field in EVAL_FLAG_FIELDS.items():
        if name in given:
            value = ctx.params[name]
            value = [t for t in value.split(",") if t] if name == "tasks" else parse_modes(value) if name == "mode" \
                else value
            overrides.append(f"{field}={json.dumps(value)}")
    return overrides


@app.command()
def report(
    runs: List[Path] = typer.Argument(..., help="run directories (or eval output directories)"),
    out: Path = typer.Option(Path("runs/report"), help="where to write report.md and report.html"),
    base: Optional[str] = typer.Option(None, help="label (or run path) of the model the deltas are taken against"),
    task_set: Optional[List[str]] = typer.Option(
        None, "--task-set", help="a named set of tasks whose mean the report shows with its interval and paired "
        "delta: NAME=task,task,... (repeatable)"),
    adjust: str = typer.Option(
        "none", "--adjust", help="how differences to the base model are marked: none (each paired test's own 95% "
        "interval), holm (Holm-adjusted p over every test shown: family-wise error 5%) or bh (Benjamini-Hochberg: "
        "false discovery rate 5%)"),
):
    """Lay several runs side by side: Markdown + self-contained HTML with plots."""
    from findap.report.build import build_report
    from findap.report.leaderboard import parse_task_sets
    from findap.report.multiplicity import parse_adjust

    try:
        sets = parse_task_sets(task_set or [])
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--task-set")
    try:
        adjust = parse_adjust(adjust)
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--adjust")
    _check_report_inputs([Path(r) for r in runs], base, sets)  # before anything is written under --out
    paths = build_report([Path(r) for r in runs], out, base=base, task_sets=sets, adjust=adjust)
    console.print(f"report: {paths}")


def _check_report_inputs(runs: list[Path], base: Optional[str], sets: dict[str, list[str]]) -> None:
    """The report's inputs, read only: every input exists and holds results, --base names one of their models (or
    an input path) and every --task-set task is a task. Each problem is one UsageError naming the flag or folder."""
    import difflib

    from findap.errors import UsageError
    from findap.report.collect import load_results

    for run_path in runs:
        if not run_path.exists():
            raise UsageError(f"{run_path}: no such run or results folder",
                             "give run directories (runs/NAME) or eval output folders")
    relabelled: list[str] = []
    results = load_results(runs, relabelled)  # a malformed result file is a DataError naming the file and line
    for line in relabelled:
        console.print(f"report: {line}", markup=False, highlight=False, soft_wrap=True)
    if not results:
        where = ", ".join(map(str, runs))
        raise UsageError(f"no eval results under {where}", "a report reads the per-task JSON files that `findap eval` "
                         "writes: run the eval stage first, or give the folder it wrote")
    labels = sorted({r.model for r in results})
    if base is not None and base not in labels and not Path(base).exists():
        close = difflib.get_close_matches(base, labels, n=1, cutoff=0.5)
        raise UsageError(f"--base {base}: not a model of these results ({', '.join(labels)}) nor a folder",
                         f"did you mean --base {close[0]}?" if close else None)
    if sets:
        from findap.eval.registry import all_specs

        known = {*all_specs(), *(r.task for r in results)}
        for name, tasks in sets.items():
            for task in tasks:
                if task not in known:
                    close = difflib.get_close_matches(task, sorted(known), n=1, cutoff=0.6)
                    raise UsageError(f"--task-set {name}: unknown task {task!r}",
                                     f"did you mean {close[0]}?" if close else "`findap eval --list` lists the tasks")
        scored = sorted({r.task for r in results})
        for name, tasks in sets.items():
            missing = [task for task in tasks if task not in scored]
            if missing:  # the set's mean needs every task: without this line it would silently not be shown
                raise UsageError(f"--task-set {name}: no results for {', '.join(missing)} under "
                                 f"{', '.join(map(str, runs))}", f"the results hold {', '.join(scored)}")


@app.command()
def run(
    recipe: Path = RECIPE,
    set: Optional[List[str]] = SET,
    only: Optional[List[str]] = typer.Option(None, help="run only these stages (repeatable)"),
    force: Optional[List[str]] = typer.Option(None, "--force", help="clear this stage's outputs and run it again "
                                              "(repeatable; 'all' for every stage); later stages rerun when what "
                                              "they read changes"),
    dry_run: bool = DRY_RUN,
):
    """Run every stage of a recipe in order; a finished stage is skipped while its inputs (recipe section, models,
    upstream outputs, data files) are unchanged, and rerun with a line saying why when they changed. Resumes after
    a kill."""
    import difflib

    from findap.errors import UsageError
    from findap.pipeline import run_recipe

    loaded = _load(recipe, set)
    for flag, names in (("--only", only or []), ("--force", [f for f in force or [] if f != "all"])):
        unknown = [s for s in names if s not in loaded.stages]
        if unknown:
            close = difflib.get_close_matches(unknown[0], loaded.stages, n=1)
            raise UsageError(f"{flag} {', '.join(unknown)}: not among this recipe's stages "
                             f"({', '.join(loaded.stages)})", f"did you mean {flag} {close[0]}?" if close else None)
    forced: list[str] | bool = True if "all" in (force or []) else list(force or [])
    if dry_run:
        return _dry_run(loaded, [s for s in loaded.stages if not only or s in only], forced, set)
    run_recipe(loaded, only=only, force=forced)


@app.command()
def sweep(
    recipes: List[Path] = typer.Argument(..., exists=True, help="recipe files, or directories of them (each "
                                         "directory's *.yaml, sorted), e.g. recipes/ablations/"),
    shared_curation: bool = typer.Option(True, "--shared-curation/--no-shared-curation", help="run the first "
                                         "recipe's curate stage once and let every recipe train on it (their curate "
                                         "sections must be identical); off: each recipe curates for itself"),
    base_recipe: Optional[Path] = typer.Option(None, "--base-recipe", exists=True, dir_okay=False, help="start "
                                               "every recipe from this one instead of its own `base:`"),
    curation: Optional[Path] = typer.Option(None, "--curation", exists=True, file_okay=False, help="share this "
                                            "finished run's curation (RUN_DIR or RUN_DIR/curate) instead"),
    out: Optional[Path] = typer.Option(None, "--out", help="sweep directory: a run directory per recipe, "
                                       "report/, sweep.json (default: <runs_dir>/<directory name, or 'sweep'>)"),
    set: Optional[List[str]] = SET,
    dry_run: bool = DRY_RUN,
):
    """Run several recipes (an ablation suite) on one curation and write one side-by-side report with intervals;
    finished stages are skipped, so a killed sweep resumes."""
    from findap.sweep import budgets, describe, plan_sweep, print_budgets, run_sweep

    # SweepError, RecipeError, PreflightError name the file and field: one line each (the error contract)
    planned = plan_sweep(recipes, shared_curation=shared_curation, base_recipe=base_recipe, overrides=set or [],
                         curation=curation, out=out)
    if dry_run:
        lines = describe(planned)
        print_budgets(budgets(planned))
        typer.echo("sweep is valid; dry run, nothing started:")
        for line in lines:
            typer.echo(f"  {line}")
        return
    run_sweep(planned)


@app.command()
def chat(
    prompt: Optional[str] = typer.Argument(None, help="one message; omit for an interactive chat"),
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="model name, hub id or directory"),
    max_new_tokens: int = typer.Option(256, min=1, help="answer length limit (tokens)"),
    temperature: float = typer.Option(0.0, min=0.0, help="0 = greedy"),
    system: Optional[str] = typer.Option(None, help="system message"),
    device: Optional[str] = engine_option(CHAT_FLAGS["device"]),
    precision: Optional[str] = engine_option(CHAT_FLAGS["precision"]),
    max_length: int = engine_option(CHAT_FLAGS["max_length"]),
):
    """Talk to a model (the embedded one by default)."""
    from findap.engines.base import GenerationRequest
    from findap.engines import make_engine
    from findap.engines.options import config_from
    from findap.errors import UsageError

    # every check before the model loads: a wrong argument costs no loading time
    if prompt is not None and not prompt.strip():
        raise UsageError("empty message", 'give a question, e.g. findap chat "What is a bond?", or no argument for an '
                         "interactive chat")
    _check_model_arg(model, "--model")
    flags = {"device": device, "precision": precision, "max_length": max_length}
    spec = config_from(CHAT_FLAGS, flags, kind="hf", batch_size=1).resolve(model=model)  # one request at a time
    engine = make_engine(spec)  # a model that fails to load is a usage line (findap.models)
    history = [{"role": "system", "content": system}] if system else []
    interactive = prompt is None
    while True:
        try:
            text = prompt if prompt is not None else typer.prompt("you", prompt_suffix="> ", default="",
                                                                  show_default=False)
        except typer.Abort:  # Ctrl-D (or Ctrl-C) at the prompt ends the chat
            typer.echo("", err=True)
            break
        if not text or text.strip() in ("/exit", "/quit"):
            break
        history.append({"role": "user", "content": text})
        req = GenerationRequest(prompt=list(history), max_new_tokens=max_new_tokens, temperature=temperature, seed=0)
        answer = engine.generate([req], progress=False)[0].strip()
        history.append({"role": "assistant", "content": answer})
        typer.echo(answer)
        if not interactive:
            break
        prompt = None


@app.command()
def serve(
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="model name, hub id or directory"),
    served_name: Optional[str] = typer.Option(None, help="the model name clients send (default: --model)"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000, help="TCP port (1-65535); checked to be free before the model loads"),
    device: Optional[str] = engine_option(SERVE_FLAGS["device"]),
    precision: Optional[str] = engine_option(SERVE_FLAGS["precision"]),
    batch_size: int = engine_option(SERVE_FLAGS["batch_size"]),
    max_batch_tokens: int = engine_option(SERVE_FLAGS["max_batch_tokens"]),
    max_length: int = engine_option(SERVE_FLAGS["max_length"]),
    cache_path: Optional[str] = engine_option(SERVE_FLAGS["cache_path"]),
):
    """Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models)."""
    from findap.engines.options import config_from
    from findap.engines.server import serve as serve_model

    _check_model_arg(model, "--model")
    flags = {"device": device, "precision": precision, "batch_size": batch_size, "max_batch_tokens": max_batch_tokens,
             "max_length": max_length, "cache_path": cache_path}
    spec = config_from(SERVE_FLAGS, flags, kind="hf").resolve(model=model)
    # the address is checked by serve_model before the model loads
    serve_model(spec, host, port, served_name)


def _check_model_arg(model: str, flag: str) -> None:
    """A model argument is checked before anything loads (findap.models.model_problem: a local folder must hold a
    model; other names are the embedded model or Hugging Face ids, which only the loader can check)."""
    from findap.errors import UsageError
    from findap.models import model_problem

    if problem := model_problem(model):
        raise UsageError(f"{flag} {problem}")


@app.command()
def models(model: str = typer.Argument("smollm2-135m-instruct")):
    """Resolve (and for the embedded model, convert once) a model; print where it lives."""
    from findap.models import resolve_model

    typer.echo(resolve_model(model))


demo_app = typer.Typer(help="The demo dataset that ships with findap (written and generated for it).")
app.add_typer(demo_app, name="demo")


@demo_app.command("export")
def demo_export(dest: Path = typer.Argument(..., file_okay=False, help="folder to copy the demo files into"),
                overwrite: bool = typer.Option(False, help="replace existing files")):
    """Copy the demo files into DEST as the starting point for your own data."""
    from findap.demo import export_demo

    for path in export_demo(dest, overwrite=overwrite):
        typer.echo(path)


@demo_app.command("check")
def demo_check(name: str = typer.Argument(..., help="demo set name, e.g. sentiment"),
               file: Path = typer.Argument(..., exists=True, dir_okay=False, help="your file in that set's format")):
    """Validate FILE against a demo set's format (errors name file, line and field; exit 2 when one is wrong)."""
    from findap.demo import load_demo

    rows = load_demo(name, path=file)  # a bad row is a DataError: one line and exit 2 (the error contract)
    typer.echo(f"{file}: {len(rows)} valid {name} rows")


@app.command(name="recipe-schema")
def recipe_schema(as_json: bool = typer.Option(False, "--json", help="print the raw JSON schema instead")):
    """Print every recipe field with its type, default and meaning: one table per section (the names are what
    --set takes, e.g. train.lr; `[]` marks a list item: train.groups.0.lr)."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from findap.recipe import Recipe

    if as_json:
        typer.echo(json.dumps(Recipe.model_json_schema(), indent=2))
        return
    out = Console(width=None if sys.stdout.isatty() else 160)  # piped (less, grep): wide rows, no wrapping
    sections: dict[str, list[tuple[str, str, str, str]]] = {"recipe": []}
    for name, info in Recipe.model_fields.items():
        if _schema_model(info.annotation) is not None:
            sections[name] = list(_schema_rows(_schema_model(info.annotation), name))
        else:
            sections["recipe"].append((name, _type_name(info.annotation), _default_text(info),
                                       info.description or ""))
    for title, rows in sections.items():
        table = Table(title=f"{title} (top-level fields)" if title == "recipe" else f"{title}:",
                      title_justify="left", title_style="bold", box=box.SIMPLE_HEAD, pad_edge=False)
        table.add_column("field", no_wrap=True)
        table.add_column("type", overflow="fold", max_width=30)
        table.add_column("default", overflow="fold", max_width=26)
        table.add_column("meaning", ratio=1)
        for row in rows:
            table.add_row(*(Text(cell) for cell in row))  # Text: `list[str]` is not rich markup
        out.print(table)


def _schema_model(annotation):
    """The pydantic model an annotation holds directly (a section), else None."""
    from pydantic import BaseModel

    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _schema_rows(model, prefix: str):
    """(dotted field, type, default, meaning) of every field of `model`, nested sections and list items flattened
    (`train.groups[].lr`, `train.memory.budget_gb`)."""
    from typing import get_args, get_origin

    for name, info in model.model_fields.items():
        path = f"{prefix}.{name}"
        yield path, _type_name(info.annotation), _default_text(info), " ".join((info.description or "").split())
        annotation = info.annotation
        inner = _schema_model(annotation)
        if inner is not None:
            yield from _schema_rows(inner, path)
            continue
        origin, args = get_origin(annotation), get_args(annotation)
        for arg in args:
            if _schema_model(arg) is not None:
                item = "[]" if origin is list else ".<key>" if origin is dict else ""
                yield from _schema_rows(arg, path + item)


def _type_name(annotation) -> str:
    """A short readable type: int, float | None, auto|bf16|fp16|fp32, list[str], a section's class name."""
    import types
    from typing import Literal, Union, get_args, get_origin

    origin, args = get_origin(annotation), get_args(annotation)
    if origin is Literal:
        return "|".join(str(a) for a in args)
    if origin in (Union, types.UnionType):
        return " | ".join("None" if a is type(None) else _type_name(a) for a in args)
    if origin is not None:
        return f"{getattr(origin, '__name__', str(origin))}[{', '.join(_type_name(a) for a in args)}]"
    if _schema_model(annotation) is not None:
        return "section"
    return getattr(annotation, "__name__", str(annotation))


def _default_text(info) -> str:
    from pydantic import BaseModel

    if info.is_required():
        return "(required)"
    value = info.get_default(call_default_factory=True)
    if isinstance(value, BaseModel):
        return "(section)"
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        return f"{len(value)} item{'s' if len(value) > 1 else ''}"
    return "None" if value is None else json.dumps(value, default=str)


def main() -> None:  # pragma: no cover - `python -m findap`
    app(sys.argv[1:], prog_name="findap")
