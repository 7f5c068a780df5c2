"""The curation pipeline, resumable and streamed over parquet shards (streaming.py), on a datatrove executor:

    sources -> min-length -> dedup -> decontamination -> judge (sample) -> classifier (rest) -> quality filter
            -> token counts -> per-group mixtures -> <group>/train.parquet, dev.parquet, manifest.json, mixture.png

`curate` runs the steps (executors.py: local, Ray or Slurm; completion markers make a killed run resume, and the
judge resumes inside its step batch by batch) and assembles the manifest from what they wrote. The list-based
helpers kept here (min_length, quality decisions, _write_groups) are the small-input reference the streamed
steps are tested against.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Callable

from findap.curate.checkpoint import work_dir
from findap.curate.config import CurateConfig
from findap.curate.mixture import (
    balance_labels, build_mixture, cap_labels, dev_split, example_label_rows, label_report, mixture_stats,
    share_warnings,
)
from findap.curate.shards import CONTRACT_FIELDS, contract_row
from findap.data_root import data_root
from findap.io import write_json, write_parquet

log = logging.getLogger(__name__)



def used_sources(cfg: CurateConfig) -> list[str]:
    needed = {name for g in cfg.groups for name in cfg.group_sources(g.name)}
    return [s.name for s in cfg.sources if s.name in needed]


def min_length(examples: list[dict], min_words: int) -> tuple[list[dict], dict[str, int]]:
    kept, dropped = [], {}
    for ex in examples:
        if ex["kind"] == "cpt" and len(ex["text"].split()) < min_words:
            dropped[ex["source"]] = dropped.get(ex["source"], 0) + 1
        else:
            kept.append(ex)
    return kept, dropped


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
) -> dict:
    """Run the whole curation into `out_dir`; returns the summary (also the manifest's core)."""
    from findap.curate import streaming
    from findap.curate.executors import run_steps
    from findap.curate.holdout import check_eval_holdout, curated_holdout_keys

    # callers without a recipe (benchmarks, tests) get the recipe's check too, before any source is read
    check_eval_holdout(cfg.eval_holdout, curated_holdout_keys(cfg))
    t0 = time.time()
    out_dir = Path(out_dir)
    # where and how wide it runs does not change the result, so it does not change the checkpoint folder
    identity = cfg.model_dump(exclude={"executor", "workers", "executor_options"})
    work = work_dir(out_dir, identity, model, seed)
    for key in [k for k in streaming._CACHE if k == str(work) or (isinstance(k, tuple) and str(work) in k)]:
        del streaming._CACHE[key]
    if eval_texts is not None and cfg.decontam.enabled and not (work / "eval_texts.json").exists():
        write_json(work / "eval_texts.json", {"texts": eval_texts, "origin": "given", "skipped": {}})
    plan = streaming.Plan(cfg=cfg.model_dump(), out_dir=str(out_dir), work=str(work), model=model, seed=seed,
                          progress=progress, tokenizer=tokenizer, make_judge=make_judge,
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
    """The manifest from the steps' small JSON results (counts, reports, group statistics)."""
    from findap.curate import streaming

    work = plan.dir
    found = json.loads((work / "filter.json").read_text(encoding="utf-8"))
    reports = {name: {k: v for k, v in r.items() if k != "shards"}
               for name, r in streaming.source_reports(plan).items()}
    for report in reports.values():
        for message in report["bad_rows"][:5]:
            log.warning("skipped malformed row: %s", message)
    decontam = {"removed": found["removed"], "eval_source": None, "skipped_tasks": {}}
    if plan.config.decontam.enabled:
        gathered = json.loads((work / "eval_texts.json").read_text(encoding="utf-8"))
        decontam.update(eval_source=gathered["origin"], skipped_tasks=gathered["skipped"],
                        eval_tasks={task: len(t) for task, t in gathered["texts"].items()})
    quality: dict = {"enabled": False, "candidates": found["candidates"]}
    if plan.quality_enabled(found["candidates"]):
        judged = json.loads((work / "judge.json").read_text(encoding="utf-8"))
        distilled = json.loads((work / "classifier.json").read_text(encoding="utf-8"))
        quality = {"enabled": True, "candidates": found["candidates"], "judge": judged["stats"],
                   "classifier": distilled["report"], "decisions": streaming.decision_counts(plan)}
    n_input = found["input_docs"]
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


def _write_groups(cfg: CurateConfig, examples: list[dict], tokens: dict[str, int], out_dir: Path,
                  seed: int) -> dict:
    out, chosen_by_group, split_by_group = {}, {}, {}
    balanced, balance = cfg.balanced_sources(), cfg.balance_labels
    for group in cfg.groups:
        names = set(cfg.group_sources(group.name))
        pool = [ex for ex in examples if ex["source"] in names]
        if group.extends:
            # paper: group 2 = group 1's data + its own additions (books, exercises). Re-mixing the whole pool
            # under group 1's shares and caps would crowd the additions out again, so they are added on top.
            added = [ex for ex in pool if ex["source"] in set(group.sources) - set(cfg.group_sources(group.extends))]
            added = balance_labels(added, balanced, balance, seed)
            plan = {"extends": group.extends, "added_docs": len(added)}
            # the parent's split stands (its dev documents were never trained on, its train documents were);
            # only the additions are split, by the same seeded rule
            parent_train, parent_dev = split_by_group[group.extends]
            added_train, added_dev = dev_split(added, cfg.mixture, seed)
            capped = cap_labels(added_train, balanced, balance, seed)
            cut = {id(ex) for ex in added_train} - {id(ex) for ex in capped}
            chosen = chosen_by_group[group.extends] + [ex for ex in added if id(ex) not in cut]
            train, dev = parent_train + capped, parent_dev + added_dev
        else:
            chosen, plan = build_mixture(balance_labels(pool, balanced, balance, seed), tokens, cfg.mixture, seed)
            train, dev = dev_split(chosen, cfg.mixture, seed)
            capped = cap_labels(train, balanced, balance, seed)
            cut = {id(ex) for ex in train} - {id(ex) for ex in capped}
            chosen, train = [ex for ex in chosen if id(ex) not in cut], capped
        chosen_by_group[group.name] = chosen
        split_by_group[group.name] = train, dev
        write_parquet(out_dir / group.name / "train.parquet", [contract_row(ex) for ex in train])
        write_parquet(out_dir / group.name / "dev.parquet", [contract_row(ex) for ex in dev])
        stats = mixture_stats(chosen, tokens)
        out[group.name] = {"sources": sorted(names), "pool_docs": len(pool), "plan": plan,
                           "train": mixture_stats(train, tokens), "dev_docs": len(dev), "all": stats,
                           "warnings": share_warnings(stats, cfg.mixture)}
        if balanced & names:
            out[group.name]["labels"] = label_report(example_label_rows(pool), example_label_rows(train),
                                                     example_label_rows(dev), balanced & names, balance)
        for warning in out[group.name]["warnings"]:
            log.warning("%s: %s", group.name, warning)
    return out
