"""The eval stage and `findap eval --model`: evaluate models on FinEval tasks in direct, CoT and/or loglik mode
(the generative chat prompts, and the plain log-likelihood form of classification and multiple-choice tasks).

Recipe runs write `runs/<run>/eval/<label>/<task>.<mode>.json` + `summary.json` for each of the run's models
(base, cpt_it, pa: the directories the pipeline passes in `ctx.inputs["models"]`). One SQLite request cache per
output directory (`cache.sqlite`, keyed by the weights' fingerprint) makes a killed evaluation resume without
repeating requests. A task whose data cannot be had here is listed in the results and fails the command unless
skips are allowed (`eval.allow_skips`, `--allow-skips`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from findap.engines import EngineConfig, make_engine
from findap.eval.runner import evaluate


def evaluate_model(model: str, label: str, *, tasks: Sequence[str], modes: Sequence[str], out_dir: Path,
                   limit: int | None = None, role: str | None = None, few_shot: int | None = None,
                   prefer: str = "local", engine: EngineConfig | None = None, device: str = "auto",
                   precision: str = "auto", on_result=None, force: bool = False, root: Path | None = None) -> dict:
    """All `modes` of one model; returns {mode: evaluate()'s result}. `engine`: the engine settings (eval.engine;
    None: the defaults), with `device` and `precision` for those it leaves to the recipe. `on_result(mode, task,
    scores)` logs progress. `force`: score every task anew, answering no request from the cache. `root`: the data
    root of local task files (None: findap.data_root's rule without a recipe)."""
    # bad data fails here, before the model loads
    tasks = load_task_data(tasks, role=role, limit=limit, prefer=prefer, root=root)
    spec = (engine or EngineConfig()).resolve(model=model, device=device, precision=precision,
                                               cache_path=str(Path(out_dir) / "cache.sqlite"))
    built = make_engine(spec.model_copy(update={"cache_path": None}) if force else spec)
    results = {}
    for mode in modes:
        out = evaluate(built, list(tasks), mode=mode, limit=limit, out_dir=Path(out_dir) / _dir_name(label),
                       role=role, few_shot=few_shot, model_name=label, prefer=prefer, force=force)
        results[mode] = out
        for task, scores in out["results"].items():
            if on_result:
                on_result(mode, task, scores)
    return results


def load_task_data(tasks: Sequence, *, role=None, limit=None, prefer: str = "local", root: Path | None = None) -> list:
    """The tasks with their data read (Task objects keep it): a malformed task file is a DataError here, before a
    model is loaded, not after. Data that cannot be had here is left for the runner to list as skipped."""
    from findap.eval.runner import as_tasks, data_unavailable

    loaded = as_tasks(list(tasks), root=root, prefer=prefer)
    refuse_missing_data_root(loaded, prefer)
    for task in loaded:
        try:
            task.docs(role, limit)
        except Exception as exc:
            if not data_unavailable(exc):
                raise
    return loaded


def refuse_missing_data_root(tasks: Sequence, prefer: str) -> None:
    """One line, before any file is read, when tasks read from a data root that is not there (not one error per
    task file)."""
    from findap.errors import UsageError
    from findap.eval.task import reads_data_root

    local = [t for t in tasks if reads_data_root(t.spec)
             and not (prefer in ("hub", "auto") and t.spec.hub is not None)]  # those may read the hub instead
    if not local:
        return
    problem = local[0].data_root.problem()
    if problem:
        raise UsageError(f"{problem} (tasks {', '.join(t.name for t in local)} read it)")


class TasksSkipped(RuntimeError):
    """Tasks could not be scored (their data is not reachable here) and the user did not allow skips."""


def skipped_tasks(results: dict[str, dict[str, dict]]) -> dict[str, str]:
    """task -> why, over {label: {mode: evaluate()'s result}}: the tasks that could not be scored. A task with no
    form in a mode (NER in loglik mode) is not among them: nothing is missing there."""
    return {task: why for by_mode in results.values() for out in by_mode.values()
            for task, why in (out.get("skipped") or {}).items() if task not in (out.get("no_form") or {})}


def refuse_skips(skipped: dict[str, str], how_to_allow: str) -> None:
    if skipped:
        names = ", ".join(sorted(skipped))
        first = next(iter(skipped.values()))
        raise TasksSkipped(f"{len(skipped)} task(s) could not run here: {names} (e.g. {first}); the other results "
                           f"are written. Drop these tasks, or accept a partial table with {how_to_allow}")


def _dir_name(label: str) -> str:
    return label.replace("/", "--")


def models_to_evaluate(recipe, ctx) -> dict[str, str]:
    """label -> model: the run's models named in `eval.include` (when they exist), plus `eval.models`."""
    cfg = recipe.eval
    given = dict(ctx.inputs.get("models") or {"base": recipe.model})
    chosen = {label: path for label, path in given.items() if label in cfg.include}
    chosen.update(cfg.models)
    return chosen


def run(recipe, ctx) -> dict:
    cfg = recipe.eval
    if not cfg.enabled:
        return {"skipped": True}
    log = ctx.logger()
    models = models_to_evaluate(recipe, ctx)
    results: dict[str, dict] = {}
    for label, model in models.items():
        log.info("evaluating %s (%s) on %s in %s mode", label, model, cfg.tasks, cfg.modes)
        results[label] = evaluate_model(
            model, label, tasks=cfg.tasks, modes=cfg.modes, out_dir=ctx.dir, limit=cfg.limit, role=cfg.split,
            few_shot=cfg.few_shot, prefer=cfg.prefer, engine=cfg.engine, device=recipe.device,
            precision=recipe.precision,
            root=recipe.data_dir, on_result=lambda mode, task, scores, label=label: ctx.log_metrics(
                {"model": label, "mode": mode, "task": task, **scores}))
        if cfg.judge is not None:
            judge_outputs(ctx.dir / _dir_name(label), cfg.judge, device=recipe.device, precision=recipe.precision)
    from rich.console import Console

    print_scores(results, Console(stderr=True))
    skipped = skipped_tasks(results)
    if not cfg.allow_skips:
        refuse_skips(skipped, "--set eval.allow_skips=true")
    return {"models": models, "skipped_tasks": skipped,
            "model_fingerprints": {label: next(iter(by_mode.values()))["model_fingerprint"]
                                   for label, by_mode in results.items() if by_mode},
            "results": {label: {mode: out["results"] for mode, out in by_mode.items()}
                        for label, by_mode in results.items()}}


def judge_outputs(out_dir: Path, judge, *, device: str = "auto", precision: str = "auto") -> list[Path]:
    """Score the stored answers of judge tasks (needs_judge) in one model's eval output folder."""
    from findap.eval.judge import JudgeSettings, judge_pending

    spec = judge.engine.resolve(model=judge.engine.model, device=device, precision=precision,
                                cache_path=str(Path(out_dir).parent / "judge-cache.sqlite"))
    settings = JudgeSettings(max_new_tokens=judge.max_new_tokens, retries=judge.retries)
    return judge_pending(out_dir, make_engine(spec), settings=settings, judge_name=judge.engine.model)


# `--mode` words that name several modes; anything else is one mode or a comma-separated list of them.
MODE_SETS = {"both": ["direct", "cot"], "all": ["direct", "cot", "loglik"]}


def parse_modes(mode: str | Sequence[str]) -> list[str]:
    """`direct`, `cot`, `loglik`, `both` (direct + cot), `all`, or a comma-separated list / a list of these ->
    the modes in the order given, each once. Raises ValueError naming what is allowed."""
    from findap.eval.task import MODES

    words = [w.strip() for w in mode.split(",")] if isinstance(mode, str) else [str(w).strip() for w in mode]
    modes: list[str] = []
    for word in words:
        if word not in MODES and word not in MODE_SETS:
            raise ValueError(f"mode {word!r}: choose direct, cot or both (direct and cot), loglik, all (every "
                             "mode), or a comma-separated list such as direct,loglik")
        modes += [m for m in MODE_SETS.get(word, [word]) if m not in modes]
    if not modes:
        raise ValueError("no mode given: choose direct, cot, loglik, both or all")
    return modes


def evaluate_models(models: Sequence[str], *, tasks: Sequence[str], mode: str | Sequence[str] = "direct",
                    limit: int | None = None, out_dir: str | Path = "runs/eval", **engine_options) -> dict:
    """`findap eval --model M [--model N] --tasks ... --mode direct|cot|loglik|both|all|direct,loglik`: one output
    folder per model, named by a label no other model of the call shares. `mode` is read by `parse_modes`.
    Returns {label: {mode: evaluate()'s result}}."""
    modes = parse_modes(mode)
    return {label: evaluate_model(m, label, tasks=tasks, modes=modes, out_dir=Path(out_dir), limit=limit,
                                  **engine_options)
            for label, m in unique_labels(models).items()}


def unique_labels(models: Sequence[str]) -> dict[str, str]:
    """label -> model, each label the model's short name (findap.models.model_label) lengthened by its parent
    folders until no two models share one: `exp1/ckpt` and `exp2/ckpt` stay apart, never one folder `ckpt`."""
    from findap.models import model_label

    models = list(models)
    twice = sorted({m for m in models if models.count(m) > 1})
    if twice:
        raise ValueError(f"--model {twice[0]} is given twice")
    labels = {m: model_label(m) for m in models}
    depth = 1
    while len({_dir_name(label) for label in labels.values()}) < len(labels):
        depth += 1
        clashing = {m for m in models
                    if [_dir_name(labels[o]) for o in models].count(_dir_name(labels[m])) > 1}
        for m in clashing:
            parts = Path(m).expanduser().resolve().parts if Path(m).expanduser().exists() else Path(m).parts
            labels[m] = "/".join(parts[-depth:]) if depth <= len(parts) else str(Path(m).expanduser().resolve())
        if depth > 64:
            raise ValueError(f"cannot tell these models apart by name: {sorted(clashing)}")
    return {label: m for m, label in labels.items()}


def print_scores(results: dict[str, dict[str, dict]], console) -> None:
    """One row per model, mode and task: n and the task's scores, each with its 95% interval; tasks that could not
    run are listed with the reason."""
    from rich.table import Table

    table = Table(title="FinEval (95% intervals)")
    for col in ("model", "mode", "task", "n", "scores"):
        table.add_column(col, justify="right" if col == "n" else "left")
    for label, by_mode in results.items():
        for mode, out in by_mode.items():
            for task, scores in out["results"].items():
                bounds = (out.get("uncertainty") or {}).get(task, {})
                shown = ", ".join(f"{k}={v:.3f}{_interval(bounds.get(k))}" for k, v in scores.items()
                                  if isinstance(v, float))
                table.add_row(label, mode, task, str((out.get("n") or {}).get(task, "")), shown)
            for task, why in (out.get("skipped") or {}).items():
                table.add_row(label, mode, task, "-", f"not run: {why}")
    console.print(table)


def _interval(bound: dict | None) -> str:
    ci = (bound or {}).get("ci95")
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci and None not in ci else ""
