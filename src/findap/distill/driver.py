"""Distillation over a list of prompts: batches of prompts in, pairs appended per prompt, resumable.

    for each batch of prompts:
        sample N solutions per prompt (policy)      -> exact check
        GenORM verdict per solution (judge)          -> label (judge / check / both)
        GenORM pairs (pair policy, cap per prompt)
        GenPRM on incorrect solutions (judge)        -> first wrong step + correction
        continue each corrected prefix (policy/judge) -> GenPRM pairs (+ Step-DPO pairs)
        per prompt: append its pairs, then one progress line (the commit point)

On restart, prompts with a progress line are skipped, and pairs of prompts without one (written just before a
kill) are discarded, so every prompt's pairs are written exactly once.
"""
from __future__ import annotations

import hashlib
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from findap.distill.genorm import Candidate, decide, judge_candidates, needs_judge, sample_candidates
from findap.distill.genprm import continuation_request, corrected_prefix, join_continuation, judge_steps
from findap.distill.pairs import orm_record, prm_records, select_orm_pairs
from findap.distill.prompts import ReasoningItem
from findap.distill.trajectories import check_answer, split_steps
from findap.engines.base import Engine
from findap.io import append_jsonl, read_jsonl_tolerant, write_json, write_jsonl

PAIRS, DEV_PAIRS, PROGRESS, STATS = "pairs.jsonl", "dev_pairs.jsonl", "progress.jsonl", "stats.json"


@dataclass
class ItemResult:
    item_id: str
    records: list[dict] = field(default_factory=list)
    drops: Counter = field(default_factory=Counter)
    candidates: int = 0
    correct: int = 0
    judged: int = 0  # candidates with both a judge verdict and an exact check
    agree: int = 0  # ... on which the two agree
    unchecked: int = 0  # candidates whose gold answer cannot be read: labelled by the judge, or dropped


def is_dev(item_id: str, fraction: float) -> bool:
    """A stable, seed-free assignment so a prompt's pairs always land in the same file."""
    bucket = int.from_bytes(hashlib.sha256(f"findap-distill:{item_id}".encode()).digest()[:8], "big") % 10_000
    return bucket < fraction * 10_000


def process_batch(items: list[ReasoningItem], policy: Engine, judge: Engine, cfg, seed: int,
                  progress: bool = True) -> list[ItemResult]:
    by_id = {item.id: item for item in items}
    results = {item.id: ItemResult(item.id) for item in items}
    cands = sample_candidates(policy, items, cfg, seed, progress)
    flat = [c for item in items for c in cands[item.id]]
    judge_candidates(judge, by_id, flat, cfg, seed, progress)  # under 'check': only candidates without a check
    for c in flat:
        r = results[c.item_id]
        r.candidates += 1
        c.label = decide(c, cfg.label_mode)
        if c.judge is not None and c.check is not None and not c.is_reference:
            r.judged += 1
            r.agree += int(c.judge == c.check)
        r.unchecked += int(c.check is None and not c.is_reference)
        if needs_judge(c, cfg.label_mode) and c.judge is None:
            r.drops["orm_judge_unparsable"] += 1
        elif c.label is None:
            r.drops["label_disagreement"] += 1
        r.correct += int(c.label is True)

    rng = random.Random(seed)
    for item in items:
        correct = [c for c in cands[item.id] if c.label is True]
        incorrect = [c for c in cands[item.id] if c.label is False]
        r = results[item.id]
        if not correct:
            r.drops["prompt_without_correct"] += 1
        if not incorrect:
            r.drops["prompt_without_incorrect"] += 1
        if cfg.genorm:
            chosen_rejected = select_orm_pairs(correct, incorrect, cfg.pair_policy, cfg.max_pairs_per_prompt, rng)
            r.records += [orm_record(item, c, rj, n) for n, (c, rj) in enumerate(chosen_rejected)]
    if cfg.genprm:
        _genprm(items, by_id, cands, results, policy, judge, cfg, seed, progress)
    return [results[item.id] for item in items]


def _genprm(items, by_id, cands, results, policy, judge, cfg, seed, progress) -> None:
    todo: list[Candidate] = []
    for item in items:
        wrong = [c for c in cands[item.id] if c.label is False and not c.is_reference]
        todo += wrong[: cfg.genprm_per_prompt]
    if not todo:
        return
    judgements = judge_steps(judge, by_id, todo, cfg, seed + 1, progress)
    ready = []
    for cand, j in zip(todo, judgements):
        drops = results[cand.item_id].drops
        steps = split_steps(cand.text)
        if j.value is None:
            drops["prm_unparsable"] += 1
        elif j.value.first_error == 0:
            drops["prm_found_no_error"] += 1
        elif j.value.first_error > len(steps):
            drops["prm_step_out_of_range"] += 1
        else:
            ready.append((cand, steps, j))
    continuer = policy if cfg.continue_with == "policy" else judge
    requests = [continuation_request(continuer, by_id[c.item_id], corrected_prefix(s, j.value), cfg.max_new_tokens)
                for c, s, j in ready]
    continuations = continuer.generate(requests, progress=progress) if requests else []
    for (cand, steps, j), text in zip(ready, continuations):
        item, r = by_id[cand.item_id], results[cand.item_id]
        corrected = join_continuation(corrected_prefix(steps, j.value), text)
        if cfg.require_correct_continuation and check_answer(corrected, item) is not True:
            r.drops["prm_continuation_wrong"] += 1
            continue
        if corrected.strip() == cand.text.strip():
            r.drops["prm_same_as_original"] += 1
            continue
        r.records += prm_records(item, cand, steps, j.value.first_error, j.value.correction, corrected,
                                 j.outputs[-1], cfg.step_pairs)


def resume_state(out_dir: Path) -> set[str]:
    """Ids already finished; drops pairs of unfinished prompts from the pair files (rewritten atomically)."""
    done = {row["item_id"] for row in read_jsonl_tolerant(out_dir / PROGRESS)}
    for name in (PAIRS, DEV_PAIRS):
        rows = read_jsonl_tolerant(out_dir / name)
        kept = [row for row in rows if row["meta"]["item_id"] in done]
        if len(kept) != len(rows):
            write_jsonl(out_dir / name, kept)
    return done


def distill_items(items: list[ReasoningItem], policy: Engine, judge: Engine, cfg, out_dir: Path, seed: int,
                  progress: bool = True) -> dict:
    """Run (or resume) distillation of `items` into `out_dir`; returns the stats also written to stats.json."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    done = resume_state(out_dir)
    todo = [item for item in items if item.id not in done]
    for start in range(0, len(todo), cfg.prompts_per_batch):
        batch = todo[start : start + cfg.prompts_per_batch]
        for result in process_batch(batch, policy, judge, cfg, seed, progress):
            target = DEV_PAIRS if is_dev(result.item_id, cfg.dev_fraction) else PAIRS
            for record in result.records:
                append_jsonl(out_dir / target, record)
            append_jsonl(out_dir / PROGRESS, {
                "item_id": result.item_id, "pairs": Counter(r["source"] for r in result.records),
                "drops": dict(result.drops), "candidates": result.candidates, "correct": result.correct,
                "judged": result.judged, "agree": result.agree, "unchecked": result.unchecked,
                "dev": target == DEV_PAIRS,
            })
    stats = summarise(read_jsonl_tolerant(out_dir / PROGRESS))
    write_json(out_dir / STATS, stats)
    return stats


def summarise(progress_rows: list[dict]) -> dict:
    pairs, drops = Counter(), Counter()
    for row in progress_rows:
        pairs.update(row["pairs"])
        drops.update(row["drops"])
    n = len(progress_rows)
    judged = sum(row["judged"] for row in progress_rows)
    per_prompt = Counter(sum(row["pairs"].values()) for row in progress_rows)
    return {
        "prompts": n,
        "pairs": sum(pairs.values()),
        "pairs_by_source": dict(pairs),
        "pairs_per_prompt": sum(pairs.values()) / n if n else 0.0,
        "pairs_per_prompt_histogram": {str(k): v for k, v in sorted(per_prompt.items())},
        "dev_prompts": sum(1 for row in progress_rows if row["dev"]),
        "candidates": sum(row["candidates"] for row in progress_rows),
        "correct_candidates": sum(row["correct"] for row in progress_rows),
        "judge_check_compared": judged,
        "judge_check_agreement": sum(row["agree"] for row in progress_rows) / judged if judged else None,
        "unchecked_candidates": sum(row.get("unchecked", 0) for row in progress_rows),  # unreadable gold
        "drops": dict(drops),
    }
