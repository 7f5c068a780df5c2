"""What every curation step needs (`Plan`), the work folder's layout, and the global order of the examples.

The global order is the recipe's order of sources, then each source's rows in conversion order: the first of two
duplicates in that order is the one kept. Shards are named `NNN_<source>/NNNNN` (source number, shard number), so
sorting their paths gives the global order, and a row is identified by a 64-bit key that sorts the same way:
source number x 2^40 + the row's number within its source (`row_key`).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from findap.curate.config import CurateConfig

SOURCE_BITS = 40  # rows per source below 2^40 (a trillion); sources below 2^23
# part of the work folder's name: changed whenever the files in it change meaning, so a rerun never resumes from
# (or skips tasks because of) another layout's files
WORK_LAYOUT = "datatrove-blocks"


@dataclass(frozen=True)
class Plan:
    """Everything a block needs, picklable for the executors (Ray and Slurm send it to other processes)."""

    config: CurateConfig
    out_dir: str
    work: str
    model: str
    seed: int
    device: str = "auto"  # for the recipe's judge engine when no `make_judge` is given
    precision: str = "auto"
    progress: bool = False
    tokenizer: object = None  # an in-process caller may hand one in; blocks load `model`'s otherwise
    make_judge: Callable[[], object] | None = None
    used_sources: tuple[str, ...] = ()

    @property
    def dir(self) -> Path:
        return Path(self.work)

    def path(self, *parts: str) -> str:
        return str(Path(self.work, *parts))

    def quality_enabled(self, candidates: int) -> bool:
        judge = self.config.judge
        return judge.enabled and candidates > 0 and judge.sample_size > 0

    def judge_engine(self):
        if self.make_judge is not None:
            return self.make_judge()
        from findap.curate.curation import default_judge

        return default_judge(self.config, self.model, self.device, self.precision)()

    def sample(self) -> dict:
        """The filter step's result: {"candidates": n, "sample": [ids the judge labels]}."""
        return json.loads((self.dir / "sample.json").read_text(encoding="utf-8"))


def work_dir(stage_dir: Path, *parts: Any) -> Path:
    """<stage_dir>/work/<hash of parts>: named by everything that determines the result (curate section, model,
    seed), so a changed recipe never reuses stale work."""
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]
    path = Path(stage_dir) / "work" / key
    path.mkdir(parents=True, exist_ok=True)
    return path


def used_sources(cfg: CurateConfig) -> tuple[str, ...]:
    """The sources some group uses, in the recipe's order (the global order)."""
    needed = {name for g in cfg.groups for name in cfg.group_sources(g.name)}
    return tuple(s.name for s in cfg.sources if s.name in needed)


def shard_name(source_number: int, source: str, row: int, shard_rows: int) -> str:
    return f"{source_number:03d}_{source}/{row // shard_rows:05d}"


def row_key(shard: str, index: int, shard_rows: int) -> int:
    """The global key of row `index` of `shard` ("NNN_<source>/NNNNN")."""
    start, _ = shard_span(shard, shard_rows)
    return start + index


def shard_span(shard: str, shard_rows: int) -> tuple[int, int]:
    """[first, last + 1) of the row keys a shard can hold."""
    folder, number = shard.rsplit("/", 1)
    start = (int(folder[:3]) << SOURCE_BITS) + int(number) * shard_rows
    return start, start + shard_rows


def source_reports(plan: Plan) -> dict[str, dict]:
    """{source: its report.json} (what the convert step counted), in the global order."""
    return {name: json.loads((plan.dir / "shards" / f"{i:03d}_{name}" / "report.json").read_text(encoding="utf-8"))
            for i, name in enumerate(plan.used_sources)}
