"""The eval stage and `findap eval --model`: evaluate models on FinEval tasks in direct and/or CoT mode.

Recipe runs write `runs/<run>/eval/<label>/<task>.<mode>.json` + `summary.json` for each of the run's models
(base, cpt_it, pa: the directories the pipeline passes in `ctx.inputs["models"]`). One SQLite request cache per
output directory (`cache.sqlite`) makes a killed evaluation resume without repeating requests.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from findap.engines import EngineSpec, make_engine
from findap.eval.runner import evaluate


def evaluate_model(model: str, label: str, *, tasks: Sequence[str], modes: Sequence[str], out_dir: Path,
                   limit: int | None = None, role: str | None = None, few_shot: int | None = None,
                   prefer: str = "local", engine_kind: str = "hf", base_url: str | None = None,
                   api_key_env: str = "OPENAI_API_KEY", batch_size: int = 16, max_length: int = 2048,
                   max_batch_tokens: int | None = 16384, device: str = "auto", precision: str = "auto",
                   on_result=None) -> dict:
    """All `modes` of one model; returns {mode: {task: scores}}. `on_result(mode, task, scores)` logs progress."""
    spec = EngineSpec(kind=engine_kind, model=model, base_url=base_url, api_key_env=api_key_env,
                      batch_size=batch_size, max_batch_tokens=max_batch_tokens, max_length=max_length,
                      device=device, precision=precision, cache_path=str(Path(out_dir) / "cache.sqlite"))
    engine = make_engine(spec)
    results = {}
    for mode in modes:
        out = evaluate(engine, list(tasks), mode=mode, limit=limit, out_dir=Path(out_dir) / _dir_name(label),
                       role=role, few_shot=few_shot, model_name=label, prefer=prefer)
        results[mode] = out["results"]
        for task, scores in out["results"].items():
            if on_result:
                on_result(mode, task, scores)
    return results


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
            few_shot=cfg.few_shot, prefer=cfg.prefer, engine_kind=cfg.engine, base_url=cfg.base_url,
            api_key_env=cfg.api_key_env, batch_size=cfg.batch_size, max_length=cfg.max_length,
            max_batch_tokens=cfg.max_batch_tokens, device=recipe.device, precision=recipe.precision,
            on_result=lambda mode, task, scores, label=label: ctx.log_metrics(
                {"model": label, "mode": mode, "task": task, **scores}))
        if cfg.judge is not None:
            judge_outputs(ctx.dir / _dir_name(label), cfg.judge, device=recipe.device, precision=recipe.precision)
    return {"models": models, "results": results}


def judge_outputs(out_dir: Path, judge, *, device: str = "auto", precision: str = "auto") -> list[Path]:
    """Score the stored answers of judge tasks (needs_judge) in one model's eval output folder."""
    from findap.eval.judge import JudgeSettings, judge_pending

    engine = make_engine(EngineSpec(kind=judge.engine, model=judge.model, base_url=judge.base_url,
                                    api_key_env=judge.api_key_env, max_batch_tokens=judge.max_batch_tokens,
                                    device=device, precision=precision,
                                    cache_path=str(Path(out_dir).parent / "judge-cache.sqlite")))
    settings = JudgeSettings(max_new_tokens=judge.max_new_tokens, retries=judge.retries)
    return judge_pending(out_dir, engine, settings=settings, judge_name=judge.model)


def evaluate_models(models: Sequence[str], *, tasks: Sequence[str], mode: str = "direct", limit: int | None = None,
                    out_dir: str | Path = "runs/eval", **engine_options) -> dict:
    """`findap eval --model M [--model N] --tasks ... --mode direct|cot|both`: one output folder per model."""
    from findap.models import model_label

    modes = ["direct", "cot"] if mode == "both" else [mode]
    if any(m not in ("direct", "cot") for m in modes):
        raise ValueError(f"mode must be direct, cot or both, not {mode!r}")
    return {model_label(m): evaluate_model(m, model_label(m), tasks=tasks, modes=modes, out_dir=Path(out_dir),
                                           limit=limit, **engine_options)
            for m in models}
