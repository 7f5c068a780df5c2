"""The curation pipeline, block by block, resumable:

    sources -> min-length -> dedup -> decontamination -> judge (sample) -> classifier (rest) -> quality filter
            -> token counts -> per-group mixtures -> <group>/train.parquet, dev.parquet, manifest.json, mixture.png

Every block's result is checkpointed (checkpoint.py); a killed run resumes at the first unfinished block, and the
judge resumes inside its block batch by batch.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from findap.curate.checkpoint import cached_block, work_dir
from findap.curate.config import CurateConfig
from findap.curate.decontam import decontaminate
from findap.curate.dedup import dedup
from findap.curate.mixture import build_mixture, dev_split, mixture_stats, share_warnings
from findap.curate.records import example_text
from findap.curate.sources import load_source
from findap.io import read_jsonl_tolerant, write_json, write_jsonl, write_parquet

log = logging.getLogger(__name__)

CONTRACT_FIELDS = ("id", "kind", "text", "messages", "source", "domain", "capability")


def used_sources(cfg: CurateConfig) -> list[str]:
    needed = {name for g in cfg.groups for name in cfg.group_sources(g.name)}
    return [s.name for s in cfg.sources if s.name in needed]


def load_sources(cfg: CurateConfig, work: Path) -> tuple[list[dict], dict[str, dict]]:
    """Every source used by a group, converted once (examples JSONL first, then its report = the marker)."""
    examples, reports = [], {}
    specs = {s.name: s for s in cfg.sources}
    for name in used_sources(cfg):
        data, marker = work / "sources" / f"{name}.jsonl", work / "sources" / f"{name}.report.json"
        if marker.exists():
            rows = read_jsonl_tolerant(data)
            report = json.loads(marker.read_text(encoding="utf-8"))
        else:
            rows, source_report = load_source(specs[name], cfg)
            report = asdict(source_report)
            write_jsonl(data, rows)
            write_json(marker, report)
        for message in report["bad_rows"][:5]:
            log.warning("skipped malformed row: %s", message)
        examples += rows
        reports[name] = report
    return examples, reports


def min_length(examples: list[dict], min_words: int) -> tuple[list[dict], dict[str, int]]:
    kept, dropped = [], {}
    for ex in examples:
        if ex["kind"] == "cpt" and len(ex["text"].split()) < min_words:
            dropped[ex["source"]] = dropped.get(ex["source"], 0) + 1
        else:
            kept.append(ex)
    return kept, dropped


def _keep_ids(examples: list[dict], ids: list[str]) -> list[dict]:
    keep = set(ids)
    return [ex for ex in examples if ex["id"] in keep]


def default_judge(cfg: CurateConfig, model: str, device: str = "auto", precision: str = "auto"):
    """A factory for the recipe's judge engine: built only when the judge block actually runs."""
    judge = cfg.judge

    def make():
        from findap.engines import EngineSpec, make_engine

        return make_engine(EngineSpec(kind=judge.engine, model=judge.model or model, base_url=judge.base_url,
                                      api_key_env=judge.api_key_env, batch_size=judge.batch_size,
                                      device=device, precision=precision))

    return make


def quality_block(cfg: CurateConfig, examples: list[dict], work: Path, seed: int, model: str,
                  make_judge: Callable[[], object] | None, progress: bool) -> dict:
    """Judge a sample, distill a classifier for the rest, decide keep/drop for every filtered example."""
    from findap.curate.classifier import distill
    from findap.curate.judge_filter import judge_examples, judge_stats, pick_sample

    judge = cfg.judge
    candidates = [ex for ex in examples if ex["kind"] in judge.kinds and ex["domain"] in judge.domains]
    if not judge.enabled or not candidates or judge.sample_size == 0:
        return {"enabled": False, "candidates": len(candidates), "dropped_ids": [], "scores": {}}

    def run_judge_block() -> dict:
        sample = pick_sample(candidates, judge.sample_size, seed)
        engine = make_judge() if make_judge is not None else default_judge(cfg, model)()
        labels = judge_examples(engine, sample, judge, work / "judge_labels.jsonl", seed, progress)
        return {"labels": labels, "stats": judge_stats(labels)}

    judged, _ = cached_block(work / "judge.json", run_judge_block)
    labels = judged["labels"]

    def run_classifier_block() -> dict:
        if not cfg.classifier.enabled:
            return {"scores": {}, "report": {"trained": False, "reason": "disabled"}}
        text = {ex["id"]: example_text(ex) for ex in candidates}
        labeled = [(i, text[i], row["score"]) for i, row in labels.items() if row["score"] is not None]
        unlabeled = [(ex["id"], text[ex["id"]]) for ex in candidates if ex["id"] not in labels]
        scores, report = distill(labeled, unlabeled, cfg.classifier, judge.threshold, seed, progress=progress)
        return {"scores": scores, "report": report}

    distilled, _ = cached_block(work / "classifier.json", run_classifier_block)
    scores, dropped, counts = {}, [], {"judge_kept": 0, "judge_dropped": 0, "judge_failed_kept": 0,
                                       "judge_failed_dropped": 0, "classifier_kept": 0, "classifier_dropped": 0,
                                       "unscored_kept": 0}
    for ex in candidates:
        i = ex["id"]
        if i in labels:
            score = labels[i]["score"]
            if score is None:
                keep = judge.on_failure == "keep"
                counts["judge_failed_kept" if keep else "judge_failed_dropped"] += 1
            else:
                keep = score >= judge.threshold
                counts["judge_kept" if keep else "judge_dropped"] += 1
        elif i in distilled["scores"]:
            score = distilled["scores"][i]
            keep = score >= judge.threshold or not cfg.classifier.filter
            counts["classifier_kept" if keep else "classifier_dropped"] += 1
        else:
            score, keep = None, True  # no classifier could be trained: unfiltered, and said so in the manifest
            counts["unscored_kept"] += 1
        scores[i] = score
        if not keep:
            dropped.append(i)
    return {"enabled": True, "candidates": len(candidates), "judge": judged["stats"],
            "classifier": distilled["report"], "decisions": counts, "dropped_ids": dropped, "scores": scores}


def contract_row(ex: dict) -> dict:
    return {k: ex.get(k) for k in CONTRACT_FIELDS}


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
    t0 = time.time()
    out_dir = Path(out_dir)
    work = work_dir(out_dir, cfg.model_dump(), model, seed)
    timings: dict[str, float] = {}

    def timed(name: str, fn: Callable):
        start = time.time()
        value = fn()
        timings[name] = round(time.time() - start, 2)
        return value

    examples, source_reports = timed("sources", lambda: load_sources(cfg, work))
    n_input = len(examples)
    examples, short = min_length(examples, cfg.min_words)

    def run_dedup() -> dict:
        kept, report = dedup(examples, cfg.dedup)
        return {"kept": [ex["id"] for ex in kept], "report": report.to_dict()}

    deduped, _ = timed("dedup", lambda: cached_block(work / "dedup.json", run_dedup))
    examples = _keep_ids(examples, deduped["kept"])

    def run_decontam() -> dict:
        if not cfg.decontam.enabled:
            return {"kept": [ex["id"] for ex in examples], "removed": {}, "eval_source": None, "skipped_tasks": {}}
        texts, origin, skipped = (eval_texts, "given", {}) if eval_texts is not None else _gather(cfg)
        kept, removed = decontaminate(examples, texts, cfg.decontam.n, cfg.decontam.short_text_words,
                                      cfg.decontam.min_overlap)
        return {"kept": [ex["id"] for ex in kept], "removed": removed, "eval_source": origin,
                "eval_tasks": {task: len(t) for task, t in texts.items()}, "skipped_tasks": skipped}

    decontam, _ = timed("decontam", lambda: cached_block(work / "decontam.json", run_decontam))
    examples = _keep_ids(examples, decontam["kept"])

    quality = timed("judge+classifier", lambda: quality_block(cfg, examples, work, seed, model, make_judge, progress))
    dropped = set(quality["dropped_ids"])
    examples = [ex for ex in examples if ex["id"] not in dropped]

    def run_tokens() -> dict[str, int]:
        from findap.curate.tokens import count_tokens

        tok = tokenizer
        if tok is None:
            from findap.models import load_tokenizer

            tok = load_tokenizer(model)
        return count_tokens(examples, tok, progress=progress)

    tokens, _ = timed("tokens", lambda: cached_block(work / "tokens.json", run_tokens))

    groups = timed("mixtures", lambda: _write_groups(cfg, examples, tokens, out_dir, seed))
    wall = time.time() - t0
    manifest = {
        "model": model, "seed": seed,
        "input_docs": n_input, "docs_per_s": round(n_input / wall, 1) if wall > 0 else None,
        "wall_s": round(wall, 2), "block_s": timings,
        "sources": source_reports,
        "filters": {"min_words": short, "dedup": deduped["report"],
                    "decontam": {k: decontam[k] for k in ("removed", "eval_source", "skipped_tasks")}
                    | {"eval_tasks": decontam.get("eval_tasks", {})},
                    "quality": {k: v for k, v in quality.items() if k not in ("dropped_ids", "scores")}},
        "groups": groups,
    }
    write_json(out_dir / "manifest.json", manifest)
    write_json(out_dir / "quality_scores.json", quality.get("scores", {}))
    if cfg.plot:
        from findap.curate.plot import plot_mixtures

        plot_mixtures({g: v["train"] for g, v in groups.items()}, out_dir / "mixture.png")
    return manifest


def _gather(cfg: CurateConfig):
    from findap.curate.eval_texts import gather_eval_texts

    return gather_eval_texts(cfg)


def _write_groups(cfg: CurateConfig, examples: list[dict], tokens: dict[str, int], out_dir: Path,
                  seed: int) -> dict:
    out, chosen_by_group = {}, {}
    for group in cfg.groups:
        names = set(cfg.group_sources(group.name))
        pool = [ex for ex in examples if ex["source"] in names]
        if group.extends:
            # paper: group 2 = group 1's data + its own additions (books, exercises). Re-mixing the whole pool
            # under group 1's shares and caps would crowd the additions out again, so they are added on top.
            added = [ex for ex in pool if ex["source"] in set(group.sources) - set(cfg.group_sources(group.extends))]
            chosen = chosen_by_group[group.extends] + added
            plan = {"extends": group.extends, "added_docs": len(added)}
        else:
            chosen, plan = build_mixture(pool, tokens, cfg.mixture, seed)
        chosen_by_group[group.name] = chosen
        train, dev = dev_split(chosen, cfg.mixture, seed)
        write_parquet(out_dir / group.name / "train.parquet", [contract_row(ex) for ex in train])
        write_parquet(out_dir / group.name / "dev.parquet", [contract_row(ex) for ex in dev])
        stats = mixture_stats(chosen, tokens)
        out[group.name] = {"sources": sorted(names), "pool_docs": len(pool), "plan": plan,
                           "train": mixture_stats(train, tokens), "dev_docs": len(dev), "all": stats,
                           "warnings": share_warnings(stats, cfg.mixture)}
        for warning in out[group.name]["warnings"]:
            log.warning("%s: %s", group.name, warning)
    return out
