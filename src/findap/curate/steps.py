"""The curation's steps, each a datatrove pipeline (a list of blocks) that executors.py runs with a task count:

    convert     curate.tasks  EvalTextsFile, SourceReader -> ShardWriter(work/shards)
    annotate    curate.tasks  ShardReader -> MinWords -> DocumentKeys -> ShardWriter(work/annotated)
    filter      1             ColumnsReader(work/annotated) -> DedupFilter -> DecontamFilter -> JudgeSample
                              -> ShardWriter(work/filter)
    judge       1             ShardReader -> Survivors -> JudgeLabels
    classifier  1             ShardReader -> Survivors -> ClassifierHead
    score       curate.tasks  ShardReader -> Survivors -> QualityScores -> QualityFilter -> TokenCounts
                              -> MixtureKeys -> ShardWriter(work/score)
    mixture     1             GroupMixtures (columns of work/score, no texts)
    gather      curate.tasks  ShardReader -> Pieces -> ShardWriter(work/pieces)
    write       1             WriteOutputs

Filters write what they drop, with the reason, to work/excluded/<step>/<rank>.parquet; the manifest's filter counts
are counted from those files (`filter_counts`). Per-shard steps split the shards rank::world_size, ordered passes
(filter, and the steps that hold one sample or one pool) run one task in the global order. What one task holds is
bounded by a shard (curate.shard_rows), the eval sets, the judge sample, or per-document keys and columns (~100
bytes a document in filter and mixture), never by the corpus's texts.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import pyarrow.parquet as pq

from findap.curate.blocks.annotate import DocumentKeys, MinWords
from findap.curate.blocks.convert import EvalTextsFile, SourceReader
from findap.curate.blocks.documents import (
    ANNOTATED_SCHEMA, META_SCHEMA, PIECE_SCHEMA, SHARD_SCHEMA, SURVIVOR_SCHEMA, ColumnsReader, ShardReader,
    ShardWriter, annotated_row, exclusion_writer, meta_row, piece_row, shard_row, survivor_row,
)
from findap.curate.blocks.merge import Pieces, WriteOutputs
from findap.curate.blocks.ordered import DecontamFilter, DedupFilter, JudgeSample
from findap.curate.blocks.quality import (
    DECISIONS, ClassifierHead, JudgeLabels, MixtureKeys, QualityFilter, QualityScores, Survivors, TokenCounts,
)
from findap.curate.blocks.select import GroupMixtures
from findap.curate.plan import Plan

STEPS = ("convert", "annotate", "filter", "judge", "classifier", "score", "mixture", "gather", "write")


def pipeline(step: str, plan: Plan) -> list:
    """The blocks of one step."""
    cfg, work = plan.config, plan.work

    def shards():
        return ShardReader(plan.path("shards"), cfg.shard_rows)

    if step == "convert":
        return [EvalTextsFile(plan), SourceReader(plan), ShardWriter(plan.path("shards"), SHARD_SCHEMA, shard_row)]
    if step == "annotate":
        return [shards(), MinWords(cfg.min_words, exclusion_writer(work, "min_words")),
                DocumentKeys(cfg, plan.path("eval_texts.json")),
                ShardWriter(plan.path("annotated"), ANNOTATED_SCHEMA, annotated_row)]
    if step == "filter":
        return [ColumnsReader(plan.path("annotated")), DedupFilter(cfg.dedup, exclusion_writer(work, "dedup")),
                DecontamFilter(exclusion_writer(work, "decontam")), JudgeSample(plan),
                ShardWriter(plan.path("filter"), SURVIVOR_SCHEMA, survivor_row)]
    if step == "judge":
        return [shards(), Survivors(plan), JudgeLabels(plan)]
    if step == "classifier":
        return [shards(), Survivors(plan), ClassifierHead(plan)]
    if step == "score":
        return [shards(), Survivors(plan), QualityScores(plan), QualityFilter(exclusion_writer(work, "quality")),
                TokenCounts(plan), MixtureKeys(plan.seed), ShardWriter(plan.path("score"), META_SCHEMA, meta_row)]
    if step == "mixture":
        return [GroupMixtures(plan)]
    if step == "gather":
        # row groups of 256: the write step's merge holds one row group of each piece it has open
        return [shards(), Pieces(plan), ShardWriter(plan.path("pieces"), PIECE_SCHEMA, piece_row,
                                                    template="${output}/${shard}.parquet", batch_size=256)]
    if step == "write":
        return [WriteOutputs(plan)]
    raise ValueError(f"unknown curation step {step!r}")


def task_counts(plan: Plan) -> dict[str, int]:
    """How many tasks each step runs: per-shard steps use curate.tasks, ordered passes one."""
    tasks = plan.config.tasks
    return {"convert": min(tasks, len(plan.used_sources) + 1), "annotate": tasks, "filter": 1, "judge": 1,
            "classifier": 1, "score": tasks, "mixture": 1, "gather": tasks, "write": 1}


# ---- what the steps recorded, for the manifest -------------------------------------------------------------
def excluded(plan: Plan, step: str) -> dict[str, list]:
    """The `source` and `reason` columns of a step's exclusion files, in task order."""
    out: dict[str, list] = {"source": [], "reason": []}
    for path in sorted((plan.dir / "excluded" / step).glob("*.parquet")):
        table = pq.read_table(path, columns=["source", "reason"]).to_pydict()
        out["source"] += table["source"]
        out["reason"] += table["reason"]
    return out


def filter_counts(plan: Plan) -> dict:
    """{"min_words": {source: n}, "dedup": {exact, near, exact_total, near_total}, "removed": {task: {source: n}}},
    counted from the exclusion files; sources in the recipe's order."""
    order = {name: i for i, name in enumerate(plan.used_sources)}

    def by_source(counts: Counter) -> dict[str, int]:
        return {s: counts[s] for s in sorted(counts, key=order.__getitem__)}

    short = Counter(excluded(plan, "min_words")["source"])
    dups: dict[str, Counter] = {"exact": Counter(), "near": Counter()}
    for source, reason in zip(*excluded(plan, "dedup").values()):
        dups[reason.removesuffix("_duplicate")][source] += 1
    removed: dict[str, Counter] = defaultdict(Counter)
    for source, reason in zip(*excluded(plan, "decontam").values()):
        removed[reason.removeprefix("contaminated_")][source] += 1
    dedup = {"exact": by_source(dups["exact"]), "near": by_source(dups["near"]),
             "exact_total": sum(dups["exact"].values()), "near_total": sum(dups["near"].values())}
    return {"min_words": by_source(short), "dedup": dedup,
            "removed": {task: by_source(counts) for task, counts in removed.items()}}


def decision_counts(plan: Plan) -> dict[str, int]:
    """The quality decisions, summed over the score step's per-shard records."""
    import json

    total: Counter = Counter()
    for path in sorted((plan.dir / "score").glob("*/*.json")):
        total.update(json.loads(path.read_text(encoding="utf-8"))["decisions"])
    return {name: total.get(name, 0) for name in DECISIONS}
