"""The `findap` command line: one sub-command per stage, plus run, chat, serve and models."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console

app = typer.Typer(
    help="findap: domain-adaptive post-training of LLMs (FinDAP). Curate -> train (CPT+IT) -> distill -> "
    "align (DPO+NLL) -> eval -> report, driven by one YAML recipe.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)

RECIPE = typer.Argument(..., help="recipe YAML, e.g. recipes/demo.yaml", exists=True, dir_okay=False)
SET = typer.Option(None, "--set", "-s", help="override a recipe value: --set seed=1, --set train.groups.0.lr=1e-5, "
                   "--set 'train.groups.*.lr=1e-5' (list items by index or *; values are YAML; repeatable)")
FORCE = typer.Option(False, "--force", help="rerun the stage even if it has a DONE marker")
DRY_RUN = typer.Option(False, "--dry-run", help="validate the recipe, overrides and input files, print what would "
                       "run, and stop")


def _error(message: str) -> None:
    """Print an error as written: no rich markup (`train.groups[g]` is not a tag), no wrapping of long paths."""
    console.print(message, style="red", markup=False, soft_wrap=True)


def _load(recipe_path: Path, overrides: Optional[List[str]]):
    from findap.recipe import RecipeError, load_recipe

    try:
        return load_recipe(recipe_path, overrides or [])
    except RecipeError as e:
        _error(str(e))
        raise typer.Exit(2)


def _dry_run(recipe, stages: list[str], force: bool, overrides: Optional[List[str]] = None) -> None:
    from findap.pipeline import PreflightError, preflight

    try:
        lines = preflight(recipe, stages, force=force)
    except PreflightError as e:
        _error(str(e))
        raise typer.Exit(2)
    typer.echo(f"recipe {recipe.name!r} is valid; dry run, nothing started:")
    if overrides:
        typer.echo(f"  overrides: {' '.join(overrides)}")
    for line in lines:
        typer.echo(f"  {line}")


def _stage(stage: str, recipe_path: Path, overrides, force: bool, dry_run: bool = False) -> None:
    from findap.pipeline import run_stage

    recipe = _load(recipe_path, overrides)
    if dry_run:
        return _dry_run(recipe, [stage], force, overrides)
    summary = run_stage(recipe, stage, force=force)
    console.print({k: v for k, v in summary.items() if not isinstance(v, (dict, list))})


def _given(ctx: typer.Context) -> dict[str, str]:
    """Parameters set on the command line (not left at their defaults), by name -> how the user wrote them."""
    def given(name: str) -> bool:  # typer vendors click: compare the ParameterSource by name
        source = ctx.get_parameter_source(name)
        return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")

    return {p.name: (p.opts[0] if p.opts and p.opts[0].startswith("-") else p.name.upper())
            for p in ctx.command.params if given(p.name)}


def _refuse(given: dict[str, str], names: set[str], why: str) -> None:
    """Flags that would be silently ignored in this combination are errors instead."""
    offending = [flag for name, flag in given.items() if name in names]
    if offending:
        _error(f"{', '.join(offending)}: {why}")
        raise typer.Exit(2)


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
    tasks: str = typer.Option("fineval-similar", "--tasks", "-t", help="comma-separated tasks, groups or YAML paths"),
    mode: str = typer.Option("direct", help="direct, cot, or both"),
    limit: Optional[int] = typer.Option(None, help="at most this many examples per task"),
    split: Optional[str] = typer.Option(None, help="dev (model selection) or unseen (reports); default: each task's"),
    few_shot: Optional[int] = typer.Option(None, help="override every task's few-shot count"),
    prefer: str = typer.Option("local", help="local files, hub, or auto (local, else the hub)"),
    engine: str = typer.Option("hf", help="hf, openai (any OpenAI-compatible endpoint) or vllm"),
    base_url: Optional[str] = typer.Option(None, help="openai engine endpoint, e.g. http://127.0.0.1:8000/v1"),
    batch_size: int = typer.Option(16, help="requests per forward pass"),
    judge_model: Optional[str] = typer.Option(None, help="judge for MT-bench/FinanceBench (e.g. gpt-4o)"),
    judge_engine: str = typer.Option("openai", help="judge engine: openai, hf or vllm"),
    judge_base_url: Optional[str] = typer.Option(None, help="judge endpoint (openai engine)"),
    judge_key_env: str = typer.Option("OPENAI_API_KEY", help="environment variable holding the judge's key"),
    list_tasks: bool = typer.Option(False, "--list", help="list task groups and exit"),
    out: Path = typer.Option(Path("runs/eval"), help="output directory (with --model)"),
    set: Optional[List[str]] = SET,
    force: bool = FORCE,
    dry_run: bool = DRY_RUN,
):
    """FinEval: score models on tasks (by capability x domain x similar/novel).

    With a RECIPE, the task, engine and judge flags override its eval section (--limit 5 = --set eval.limit=5).
    With --model, they configure a standalone evaluation written under --out.
    """
    given = _given(ctx)
    if mode not in MODES:
        raise typer.BadParameter(f"{mode!r}: choose direct, cot or both", param_hint="--mode")
    if list_tasks:
        _refuse(given, given.keys() - {"list_tasks"}, "--list only lists the task groups; drop the other arguments")
        from findap.eval.registry import groups

        for name, members in sorted(groups().items()):
            typer.echo(f"{name} ({len(members)}): {', '.join(members)}")
        return
    if recipe is not None:
        _refuse(given, {"model", "out"}, "only with --model, not with a recipe: a recipe evaluates its own models "
                "(add others with --set eval.models.LABEL=PATH) and writes to <runs_dir>/<name>/eval")
        return _stage("eval", recipe, [*_eval_overrides(ctx, given), *(set or [])], force, dry_run)
    _refuse(given, {"set", "force", "dry_run"}, "only with a RECIPE (they act on a recipe's eval stage)")
    if not model:
        _error("give a recipe or at least one --model")
        raise typer.Exit(2)
    if not judge_model:
        _refuse(given, {"judge_engine", "judge_base_url", "judge_key_env"}, "configure the judge: add --judge-model")
    from findap.eval.config import JudgeEngineConfig
    from findap.eval.stage import evaluate_models, judge_outputs
    from findap.models import model_label

    results = evaluate_models(model, tasks=tasks.split(","), mode=mode, limit=limit, out_dir=out, role=split,
                              few_shot=few_shot, prefer=prefer, engine_kind=engine, base_url=base_url,
                              batch_size=batch_size)
    if judge_model:
        judge = JudgeEngineConfig(engine=judge_engine, model=judge_model, base_url=judge_base_url,
                                  api_key_env=judge_key_env)
        for m in model:
            judge_outputs(out / model_label(m).replace("/", "--"), judge)
    _print_scores(results)


MODES = {"direct": ["direct"], "cot": ["cot"], "both": ["direct", "cot"]}
# `findap eval RECIPE` flags -> the recipe field each one sets
EVAL_FLAG_FIELDS = {"tasks": "eval.tasks", "mode": "eval.modes", "limit": "eval.limit", "split": "eval.split",
                    "few_shot": "eval.few_shot", "prefer": "eval.prefer", "engine": "eval.engine",
                    "base_url": "eval.base_url", "batch_size": "eval.batch_size", "judge_model": "eval.judge.model",
                    "judge_engine": "eval.judge.engine", "judge_base_url": "eval.judge.base_url",
                    "judge_key_env": "eval.judge.api_key_env"}


def _eval_overrides(ctx: typer.Context, given: dict[str, str]) -> list[str]:
    """The eval flags the user gave, as recipe overrides (JSON values are YAML, so they parse back exactly)."""
    overrides = []
    for name, field in EVAL_FLAG_FIELDS.items():
        if name in given:
            value = ctx.params[name]
            value = [t for t in value.split(",") if t] if name == "tasks" else MODES[value] if name == "mode" else value
            overrides.append(f"{field}={json.dumps(value)}")
    return overrides


def _print_scores(results: dict) -> None:
    from rich.table import Table

    table = Table(title="FinEval")
    for col in ("model", "mode", "task", "scores"):
        table.add_column(col)
    for label, by_mode in results.items():
        for mode, by_task in by_mode.items():
            for task, scores in by_task.items():
                shown = ", ".join(f"{k}={v:.3f}" for k, v in scores.items() if isinstance(v, float))
                table.add_row(label, mode, task, shown)
    console.print(table)


@app.command()
def report(
    runs: List[Path] = typer.Argument(..., help="run directories (or eval output directories)"),
    out: Path = typer.Option(Path("runs/report"), help="where to write report.md and report.html"),
    base: Optional[str] = typer.Option(None, help="label (or run path) of the model the deltas are taken against"),
    task_set: Optional[List[str]] = typer.Option(
        None, "--task-set", help="a named set of tasks whose mean the report shows with its interval and paired "
        "delta: NAME=task,task,... (repeatable)"),
):
    """Lay several runs side by side: Markdown + self-contained HTML with plots."""
    from findap.eval.report import build_report
    from findap.eval.results import parse_task_sets

    try:
        sets = parse_task_sets(task_set or [])
    except ValueError as err:
        raise typer.BadParameter(str(err), param_hint="--task-set")
    paths = build_report([Path(r) for r in runs], out, base=base, task_sets=sets)
    console.print(f"report: {paths}")


@app.command()
def run(
    recipe: Path = RECIPE,
    set: Optional[List[str]] = SET,
    only: Optional[List[str]] = typer.Option(None, help="run only these stages (repeatable)"),
    force: bool = FORCE,
    dry_run: bool = DRY_RUN,
):
    """Run every stage of a recipe in order, skipping finished ones (resumes after a kill)."""
    from findap.pipeline import run_recipe

    loaded = _load(recipe, set)
    unknown = [s for s in only or [] if s not in loaded.stages]
    if unknown:
        _error(f"--only {', '.join(unknown)}: not among this recipe's stages ({', '.join(loaded.stages)})")
        raise typer.Exit(2)
    if dry_run:
        return _dry_run(loaded, [s for s in loaded.stages if not only or s in only], force, set)
    run_recipe(loaded, only=only, force=force)


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

    try:
        planned = plan_sweep(recipes, shared_curation=shared_curation, base_recipe=base_recipe,
                             overrides=set or [], curation=curation, out=out)
        if dry_run:
            lines = describe(planned)
            print_budgets(budgets(planned))
            typer.echo("sweep is valid; dry run, nothing started:")
            for line in lines:
                typer.echo(f"  {line}")
            return
    except ValueError as e:  # SweepError, RecipeError, PreflightError: messages naming file and field
        _error(str(e))
        raise typer.Exit(2)
    run_sweep(planned)


@app.command()
def chat(
    prompt: Optional[str] = typer.Argument(None, help="one message; omit for an interactive chat"),
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="model name, hub id or directory"),
    max_new_tokens: int = typer.Option(256, help="answer length limit"),
    temperature: float = typer.Option(0.0, help="0 = greedy"),
    system: Optional[str] = typer.Option(None, help="system message"),
):
    """Talk to a model (the embedded one by default)."""
    from findap.engines.base import EngineSpec, GenerationRequest
    from findap.engines import make_engine

    engine = make_engine(EngineSpec(kind="hf", model=model, batch_size=1))
    history = [{"role": "system", "content": system}] if system else []
    interactive = prompt is None
    while True:
        text = prompt if prompt is not None else typer.prompt("you", prompt_suffix="> ", default="", show_default=False)
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


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve(
    ctx: typer.Context,
    model: str = typer.Option("smollm2-135m-instruct", "--model", "-m", help="model name, hub id or directory"),
    host: str = typer.Option("127.0.0.1"),
    port: int = typer.Option(8000),
):
    """Serve a model over an OpenAI-compatible HTTP API (/v1/chat/completions, /v1/completions, /v1/models).

    Further options go to the server: --served-name, --device, --precision, --batch-size, --max-length,
    --cache-path.
    """
    from findap.engines.server import main as server_main

    server_main(["--model", model, "--host", host, "--port", str(port), *ctx.args])


@app.command()
def models(model: str = typer.Argument("smollm2-135m-instruct")):
    """Resolve (and for the embedded model, convert once) a model; print where it lives."""
    from findap.models import resolve_model

    typer.echo(resolve_model(model))


demo_app = typer.Typer(help="The demo dataset that ships with findap (written and generated for it).")
app.add_typer(demo_app, name="demo")


@demo_app.command("export")
def demo_export(dest: Path = typer.Argument(..., help="folder to copy the demo files into"),
                overwrite: bool = typer.Option(False, help="replace existing files")):
    """Copy the demo files into DEST as the starting point for your own data."""
    from findap.demo import export_demo

    for path in export_demo(dest, overwrite=overwrite):
        typer.echo(path)


@demo_app.command("check")
def demo_check(name: str = typer.Argument(..., help="demo set name, e.g. sentiment"),
               file: Path = typer.Argument(..., exists=True, dir_okay=False, help="your file in that set's format")):
    """Validate FILE against a demo set's format (errors name file, line and field)."""
    from findap.demo import load_demo
    from findap.io import DataError

    try:
        rows = load_demo(name, path=file)
    except DataError as e:
        _error(str(e))
        raise typer.Exit(1)
    typer.echo(f"{file}: {len(rows)} valid {name} rows")


@app.command(name="recipe-schema")
def recipe_schema():
    """Print the JSON schema of recipes (every field, default and description)."""
    import json

    from findap.recipe import Recipe

    typer.echo(json.dumps(Recipe.model_json_schema(), indent=2))


def main() -> None:  # pragma: no cover - `python -m findap`
    app(sys.argv[1:])
