"""Parquet shards of training examples: how the curation reads and writes data without holding a corpus.

A source is converted into numbered shards of at most `curate.shard_rows` rows (work/shards/<NNN>_<source>/),
every later step reads one shard at a time, and the outputs are written in bounded chunks. The schema is fixed
(the curate -> train contract, records.py), so a shard of CPT text alone still has a typed `messages` column.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

import pyarrow as pa
import pyarrow.parquet as pq

CONTRACT_FIELDS = ("id", "kind", "text", "messages", "source", "domain", "capability")
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SCHEMA = pa.schema([("id", pa.string()), ("kind", pa.string()), ("text", pa.string()),
                    ("messages", pa.list_(MESSAGE)), ("source", pa.string()), ("domain", pa.string()),
                    ("capability", pa.string())])
# shards also carry what the mixture needs beyond the contract: a classification example's label (label balancing)
SHARD_SCHEMA = pa.schema(list(SCHEMA) + [pa.field("label", pa.string())])


def contract_row(example: dict) -> dict:
    return {k: example.get(k) for k in CONTRACT_FIELDS}


def to_table(rows: list[dict], schema: pa.Schema = SCHEMA) -> pa.Table:
    return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)


def write_table_atomic(path: Path, table: pa.Table, row_group_size: int | None = None) -> Path:
    """Write a whole table (temp file + rename: a reader never sees half a shard)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        pq.write_table(table, tmp, row_group_size=row_group_size)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


class ChunkedParquetWriter:
    """Appends row chunks to one parquet file, renamed into place only by close(): bounded memory, atomic."""

    def __init__(self, path: Path, schema: pa.Schema = SCHEMA):
        self.path, self.schema = Path(path), schema
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        os.close(fd)
        self.writer = pq.ParquetWriter(self.tmp, schema)
        self.rows = 0

    def write(self, rows: list[dict]) -> None:
        if rows:
            self.writer.write_table(to_table(rows, self.schema))
            self.rows += len(rows)

    def close(self) -> Path:
        self.writer.close()
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        self.writer.close()
        Path(self.tmp).unlink(missing_ok=True)


def write_shards(folder: Path, rows: Iterable[dict], shard_rows: int) -> list[tuple[str, int]]:
    """Write `rows` as folder/00000.parquet, 00001.parquet, ... of at most `shard_rows` rows each; returns
    [(file name, rows)]. At least one (possibly empty) shard, so every source has a place in the order."""
    written, batch = [], []

    def flush():
        name = f"{len(written):05d}.parquet"
        write_table_atomic(Path(folder) / name, to_table(batch, SHARD_SCHEMA))
        written.append((name, len(batch)))

    for row in rows:
        batch.append(row)
        if len(batch) >= shard_rows:
            flush()
            batch = []
    if batch or not written:
        flush()
    return written


def read_rows(path: Path, columns: list[str] | None = None) -> list[dict]:
    return pq.read_table(path, columns=columns).to_pylist()


def iter_batches(path: Path, batch_size: int, columns: list[str] | None = None) -> Iterator[list[dict]]:
    """Rows of one parquet file in lists of at most `batch_size` (only that much decoded at a time)."""
    with pq.ParquetFile(path) as f:
        for batch in f.iter_batches(batch_size=batch_size, columns=columns):
            yield batch.to_pylist()
