"""The filter step's blocks: one task walks every example's keys in the global order (no texts).

    dedup (exact, then MinHash near-duplicates among CPT; the first in the global order wins)
    -> decontamination (the task the annotate step found) -> judge candidates and the judge's seeded sample

Label-balancing copies (`<id>~k`) repeat their original on purpose: dedup neither drops them nor lets them hide a
later example, and they are never judge candidates (without its original the mixture drops a copy anyway).
"""
from __future__ import annotations

import hashlib
import heapq

from datatrove.pipeline.filters.base_filter import BaseFilter

from findap.curate.config import DedupConfig
from findap.curate.blocks.documents import PlanStep
from findap.curate.records import copy_number
from findap.io import write_json


class DedupFilter(BaseFilter):
    """StreamDedup's decision per example (reasons `exact_duplicate`, `near_duplicate`)."""

    name = "findap dedup"

    def __init__(self, cfg: DedupConfig, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.cfg = cfg
        self.dedup = None

    def filter(self, doc) -> bool | tuple[bool, str]:
        from findap.curate.dedup import StreamDedup

        if self.dedup is None:
            self.dedup = StreamDedup(self.cfg)
        if copy_number(doc.id) > 0:
            return True
        meta = doc.metadata
        duplicate = self.dedup.duplicate(meta["source"], meta["kind"], meta["exact"], meta["bands"])
        return True if duplicate is None else (False, f"{duplicate}_duplicate")


class DecontamFilter(BaseFilter):
    """Drops examples that copy an evaluation input (reason `contaminated_<task>`)."""

    name = "findap decontamination"

    def filter(self, doc) -> bool | tuple[bool, str]:
        task = doc.metadata["task"]
        return True if task is None else (False, f"contaminated_{task}")


class SampleHeap:
    """The `size` smallest seeded ranks (judge_filter's sampling rule), kept while streaming (ties: the earlier
    example wins)."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.heap, self.seen = size, seed, [], 0

    def offer(self, example_id: str) -> None:
        rank = int(hashlib.sha256(f"{self.seed}\x00{example_id}".encode()).hexdigest(), 16)
        item = (-rank, -self.seen, example_id)  # max-heap on (rank, arrival)
        self.seen += 1
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, item)
        elif item > self.heap[0]:
            heapq.heapreplace(self.heap, item)

    def ids(self) -> list[str]:
        return [i for _, _, i in sorted(self.heap, reverse=True)]


class JudgeSample(PlanStep):
    """Marks judge candidates (metadata `candidate`), keeps the seeded sample, and when the stream ends writes
    work/sample.json: {"candidates": n, "sample": [ids]} (no sample when the judge will not run)."""

    name = "findap judge sample"

    def run(self, data, rank: int = 0, world_size: int = 1):
        judge = self.plan.config.judge
        sample, candidates = SampleHeap(judge.sample_size, self.plan.seed), 0
        for doc in data:
            meta = doc.metadata
            meta["candidate"] = (copy_number(doc.id) == 0 and meta["kind"] in judge.kinds
                                 and meta["domain"] in judge.domains)
            if meta["candidate"]:
                candidates += 1
                sample.offer(doc.id)
            yield doc
        write_json(self.plan.dir / "sample.json", {
            "candidates": candidates, "sample": sample.ids() if self.plan.quality_enabled(candidates) else []})
