"""The convert step's blocks: the recipe's sources as Documents, and the evaluation texts decontamination uses.

Work items 0..n-1 are the sources, item n the evaluation texts; task `rank` does items rank, rank + world_size, ...
A source's report.json (examples, rows reserved for evaluation, empty and bad rows, label-balancing copies, and
its shards) is written once its last example has been read.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict

from datatrove.pipeline.readers.base import BaseReader

from findap.curate.blocks.documents import PlanWork, WarmImports, example_document
from findap.curate.plan import Plan, row_key, shard_name
from findap.io import write_json, write_text


class SourceReader(WarmImports, BaseReader):
    """Yields the examples of this task's sources, each with the shard it belongs in (row // curate.shard_rows)."""

    name = "findap sources"
    warm_imports = ("findap.curate.sources",)

    def __init__(self, plan: Plan):
        super().__init__()
        self.plan = plan

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        for number in range(rank, len(self.plan.used_sources), world_size):
            yield from self.convert(number)

    def convert(self, number: int):
        from findap.curate.sources import iter_source

        cfg, name = self.plan.config, self.plan.used_sources[number]
        spec = {s.name: s for s in cfg.sources}[name]
        examples, report = iter_source(spec, cfg)
        rows = 0
        for rows, example in enumerate(examples, start=1):
            shard = shard_name(number, name, rows - 1, cfg.shard_rows)
            self.stat_update("documents")
            yield example_document(example, shard, row_key(shard, (rows - 1) % cfg.shard_rows, cfg.shard_rows))
        done = asdict(report())
        if not done["copies"]:  # only label balancing makes copies; the manifest names them only then
            del done["copies"]
        shards = [(f"{k:05d}.parquet", min(cfg.shard_rows, rows - k * cfg.shard_rows))
                  for k in range(math.ceil(rows / cfg.shard_rows))]
        write_json(self.plan.dir / "shards" / f"{number:03d}_{name}" / "report.json", done | {"shards": shards})


class EvalTextsFile(PlanWork):
    """Writes work/eval_texts.json ({"texts": {task: items}, "origin", "skipped"}) in the task that owns work item
    n (the item after the sources), unless decontamination is off or the caller gave the texts."""

    name = "findap evaluation texts"

    def work(self, rank: int, world_size: int) -> None:
        path = self.plan.dir / "eval_texts.json"
        if rank != len(self.plan.used_sources) % world_size or path.exists() or not self.plan.config.decontam.enabled:
            return
        from findap.curate.eval_texts import gather_eval_texts

        texts, origin, skipped = gather_eval_texts(self.plan.config)
        write_text(path, json.dumps({"texts": texts, "origin": origin, "skipped": skipped}, ensure_ascii=False))
