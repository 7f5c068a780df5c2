"""The curation: sources -> min-length -> dedup -> decontamination -> judge (sample) -> classifier (rest) -> quality
filter -> token counts -> per-group mixtures -> <group>/train.parquet, dev.parquet, manifest.json, mixture.png.

`curate` runs the steps (steps.py: datatrove pipelines of the blocks in blocks/, on the executor executors.py
picks: local, Ray or Slurm; completion markers make a killed run resume, and the judge resumes inside its step
batch by batch) and assembles the manifest from what they wrote.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

from findap.curate.config import CurateConfig
from findap.data_root import data_root
from findap.io import write_json

log = logging.getLogger(__name__)


def default_judge(cfg: CurateConfig, model: str, device: str = "auto", precision: str = "auto"):
    """A factory for the recipe's judge engine: built only when the judge block actually runs."""
    judge = cfg.judge

    def make():
        from findap.engines import make_engine

        return make_engine(judge.engine.resolve(model=model, device=device, precision=precision))

    return make


def curate(
    cfg: CurateConfig,
    out_dir: Path,
    *,
    model: str,
    seed: int = 0,
    tokenizer=None,
    make_judge: Callable[[], object] | None = None,
    eval_texts: dict[str, list[str]] | None = None,
    progress: bool = True,
    device: str = "auto",
    precision: str = "auto",
) -> dict:
    """Run the whole curation into `out_dir`; returns the summary (also the manifest's core). The recipe's judge
    engine runs on `device` at `precision` unless `make_judge` builds the judge."""
    from findap.curate.executors import run_steps
    from findap.curate.holdout import check_eval_holdout, curated_holdout_keys
    from findap.curate.plan import WORK_LAYOUT, Plan, used_sources, work_dir

    # callers without a recipe (benchmarks, tests) get the recipe's check too, before any source is read
    check_eval_holdout(cfg.eval_holdout, curated_holdout_keys(cfg))
    t0 = time.time()
    out_dir = Path(out_dir)
    # where and how wide it runs does not change the result, so it does not change the checkpoint folder
    identity = cfg.model_dump(exclude={"executor", "workers", "executor_options"})
    work = work_dir(out_dir, identity, model, seed, WORK_LAYOUT)
    if eval_texts is not None and cfg.decontam.enabled and not (work / "eval_texts.json").exists():
        write_json(work / "eval_texts.json", {"texts": eval_texts, "origin": "given", "skipped": {}})
    plan = Plan(config=cfg, out_dir=str(out_dir), work=str(work), model=model, seed=seed, device=device,
                precision=precision, progress=progress, tokenizer=tokenizer, make_judge=make_judge,
                used_sources=used_sources(cfg))
    timings, memory = run_steps(plan)
    manifest = assemble_manifest(plan, timings, memory, time.time() - t0)
    write_json(out_dir / "manifest.json", manifest)
    for group, info in manifest["groups"].items():
        for warning in info["warnings"]:
            log.warning("%s: %s", group, warning)
    if cfg.plot:
        from findap.curate.plot import plot_mixtures

        plot_mixtures({g: v["train"] for g, v in manifest["groups"].items()}, out_dir / "mixture.png")
    return manifest


def assemble_manifest(plan, timings: dict[str, float], memory: dict[str, dict[str, float]], wall: float) -> dict:
    """The manifest from what the steps wrote: the sources' reports, the exclusion records' counts, the judge's and
    classifier's reports, the quality decisions and the group statistics."""
    from findap.curate.plan import source_reports
    from findap.curate.steps import decision_counts, filter_counts

    work = plan.dir
    reports = {name: {k: v for k, v in r.items() if k != "shards"} for name, r in source_reports(plan).items()}
    for report in reports.values():
        for message in report["bad_rows"][:5]:
            log.warning("skipped malformed row: %s", message)
    found, sample = filter_counts(plan), plan.sample()
    decontam = {"removed": found["removed"], "eval_source": None, "skipped_tasks": {}}
    if plan.config.decontam.enabled:
        gathered = json.loads((work / "eval_texts.json").read_text(encoding="utf-8"))
        decontam.update(eval_source=gathered["origin"], skipped_tasks=gathered["skipped"],
                        eval_tasks={task: len(t) for task, t in gathered["texts"].items()})
    quality: dict = {"enabled": False, "candidates": sample["candidates"]}
    if plan.quality_enabled(sample["candidates"]):
        judged = json.loads((work / "judge.json").read_text(encoding="utf-8"))
        distilled = json.loads((work / "classifier.json").read_text(encoding="utf-8"))
        quality = {"enabled": True, "candidates": sample["candidates"], "judge": judged["stats"],
                   "classifier": distilled["report"], "decisions": decision_counts(plan)}
    n_input = sum(rows for r in source_reports(plan).values() for _, rows in r["shards"])
    return {
        "model": plan.model, "seed": plan.seed,
        "input_docs": n_input, "docs_per_s": round(n_input / wall, 1) if wall > 0 else None,
        "wall_s": round(wall, 2), "block_s": timings, "block_memory_gb": memory,
        "executor": plan.config.executor,
        "data_root": str(data_root(plan.config.data_root).path),  # what relative source paths resolved against
        "sources": reports,
        "filters": {"min_words": found["min_words"], "dedup": found["dedup"],
                    "decontam": {k: decontam[k] for k in ("removed", "eval_source", "skipped_tasks")}
                    | {"eval_tasks": decontam.get("eval_tasks", {})} | decontam_coverage(decontam),
                    "quality": quality},
        "groups": json.loads((work / "mixture.json").read_text(encoding="utf-8")),
    }


def decontam_coverage(decontam: dict) -> dict:
    """Which FinEval tasks decontamination checked, which it did not and why, and one sentence saying so."""
    checked = sorted(decontam.get("eval_tasks", {}))
    unchecked = dict(sorted(decontam.get("skipped_tasks", {}).items()))
    origin = decontam.get("eval_source")
    if origin is None:
        note = "Decontamination is disabled (curate.decontam.enabled: false): no evaluation task was checked."
    elif origin == "registry":
        note = f"Decontaminated against {len(checked)} of {len(checked) + len(unchecked)} FinEval tasks"
        note += f"; not checked: {_grouped_reasons(unchecked)}." if unchecked else " (all of them)."
    else:
        where = "the shared data files" if origin == "files" else "the evaluation texts passed to curate()"
        note = (f"Decontaminated against {len(checked)} evaluation sets read from {where} "
                f"({', '.join(checked) or 'none'}); FinEval tasks outside them were not checked.")
    return {"checked": checked, "unchecked": unchecked, "note": note}


def _grouped_reasons(unchecked: dict[str, str]) -> str:
    """'a, b (reason 1); c (reason 2)': tasks sharing a reason are named together."""
    by_reason: dict[str, list[str]] = {}
    for task, reason in unchecked.items():
        by_reason.setdefault(reason, []).append(task)
    return "; ".join(f"{', '.join(tasks)} ({reason})" for reason, tasks in by_reason.items())
