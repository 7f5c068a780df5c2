"""The gather and write steps: the chosen examples into <group>/{train,dev}.parquet, in the mixture's order.

    gather  per shard: the examples some selection chose, each as a piece row with its position in the output,
            written position-sorted to work/pieces/<group>.<split>/<shard>.parquet
    write   per output: the pieces merged in position order (at most MERGE_FAN_IN open at a time), and
            quality_scores.json from the score step's per-shard scores

The write step's job is not per document: it merges files of rows, so it is a PipelineStep that reads them.
"""
from __future__ import annotations

import heapq
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
from datatrove.data import Document

from findap.curate.blocks.documents import PIECE_SCHEMA, PlanStep, PlanWork
from findap.curate.plan import Plan, shard_span
from findap.curate.shards import SCHEMA, ChunkedParquetWriter, iter_batches

MERGE_FAN_IN = 16  # pieces open at once in the final merge: each holds a decoded row group


def outputs(plan: Plan) -> list[str]:
    return [f"{g.name}.{split}" for g in plan.config.groups for split in ("train", "dev")]


class Pieces(PlanStep):
    """For each example a selection chose, one Document per output it goes to, with metadata `output` and `pos`
    (its position there); a shard's pieces are emitted when the shard ends, output by output, position-sorted."""

    name = "findap output pieces"

    def run(self, data, rank: int = 0, world_size: int = 1):
        selections = {name: np.load(self.plan.dir / "selection" / f"{name}.npy", allow_pickle=False)
                      for name in outputs(self.plan)}
        shard, wanted, picked = None, {}, {}
        for doc in data:
            if doc.metadata["shard"] != shard:
                yield from emit(picked)
                shard = doc.metadata["shard"]
                wanted, picked = self.positions(selections, shard), {name: [] for name in selections}
            for name, pos in wanted.get(doc.metadata["row"], ()):
                picked[name].append(Document(text=doc.text, id=doc.id,
                                             metadata=doc.metadata | {"output": name, "pos": pos}))
        yield from emit(picked)

    def positions(self, selections: dict[str, np.ndarray], shard: str) -> dict[int, list[tuple[str, int]]]:
        """{row key: [(output, position)]} of the shard's chosen rows."""
        low, high = shard_span(shard, self.plan.config.shard_rows)
        out: dict[int, list[tuple[str, int]]] = {}
        for name, selection in selections.items():
            positions = np.nonzero((selection >= low) & (selection < high))[0]
            for row, pos in zip(selection[positions].tolist(), positions.tolist()):
                out.setdefault(row, []).append((name, pos))
        return out


def emit(picked: dict[str, list[Document]]) -> Iterator[Document]:
    for docs in picked.values():
        yield from sorted(docs, key=lambda d: d.metadata["pos"])


def rows_by_position(pieces: list[Path]) -> Iterator[dict]:
    """Rows of position-sorted pieces, merged into one position order (a row group per piece held)."""
    def rows(path: Path) -> Iterator[dict]:
        for batch in iter_batches(path, 256):
            yield from batch

    return heapq.merge(*(rows(p) for p in pieces), key=lambda r: r["pos"])


def write_rows(writer: ChunkedParquetWriter, rows: Iterator[dict], chunk_rows: int = 1024) -> ChunkedParquetWriter:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= chunk_rows:
            writer.write(chunk)
            chunk = []
    writer.write(chunk)
    return writer


def merged_rows(pieces: list[Path], scratch: Path) -> Iterator[dict]:
    """The rows of all pieces in position order, without their positions, at most MERGE_FAN_IN pieces open at a
    time. A corpus has a piece per shard, so one flat merge would hold a row group of every shard at once (its
    memory would grow with the corpus); instead pieces are first merged MERGE_FAN_IN at a time into sorted runs
    under `scratch`, then the runs, until few enough remain."""
    level = 0
    while len(pieces) > MERGE_FAN_IN:
        runs = []
        for start in range(0, len(pieces), MERGE_FAN_IN):
            writer = ChunkedParquetWriter(scratch / f"run{level}_{start // MERGE_FAN_IN:05d}.parquet", PIECE_SCHEMA)
            runs.append(write_rows(writer, rows_by_position(pieces[start:start + MERGE_FAN_IN])).close())
        pieces, level = runs, level + 1
    for row in rows_by_position(pieces):
        row.pop("pos")
        yield row


class WriteOutputs(PlanWork):
    """<group>/{train,dev}.parquet in chunks, and quality_scores.json streamed from the shards' scores."""

    name = "findap write outputs"

    def work(self, rank: int, world_size: int) -> None:
        plan, out = self.plan, Path(self.plan.out_dir)
        for name in outputs(plan):
            group, split = name.rsplit(".", 1)
            scratch = plan.dir / "merge" / name
            pieces = sorted((plan.dir / "pieces" / name).glob("*/*.parquet"))
            writer = write_rows(ChunkedParquetWriter(out / group / f"{split}.parquet"), merged_rows(pieces, scratch))
            if writer.rows == 0:
                writer.writer.write_table(SCHEMA.empty_table())
            writer.close()
            self.stat_update(f"rows_{name}", value=writer.rows)
            shutil.rmtree(scratch, ignore_errors=True)
        write_scores(plan, out / "quality_scores.json")


def write_scores(plan: Plan, path: Path) -> None:
    """{id: score} as findap.io.write_json would format it, written shard by shard (work/score/<shard>.json)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    first = True
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("{")
        for shard in sorted((plan.dir / "score").glob("*/*.json")):
            for i, value in json.loads(shard.read_text(encoding="utf-8"))["scores"]:
                f.write(("\n" if first else ",\n") + f"  {json.dumps(i, ensure_ascii=False)}: {json.dumps(value)}")
                first = False
        f.write("}\n" if first else "\n}\n")
    os.replace(tmp, path)
