"""The parquet schemas of training examples, and the chunked writer of the curation's outputs.

A source is converted into numbered shards of at most `curate.shard_rows` rows (work/shards/<NNN>_<source>/,
SHARD_SCHEMA), every later step reads one shard at a time, and the outputs are written in bounded chunks
(ChunkedParquetWriter, SCHEMA). The schema is fixed (the curate -> train contract, records.py), so a shard of CPT
text alone still has a typed `messages` column.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterator

import pyarrow as pa
import pyarrow.parquet as pq

CONTRACT_FIELDS = ("id", "kind", "text", "messages", "source", "domain", "capability")
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
SCHEMA = pa.schema([("id", pa.string()), ("kind", pa.string()), ("text", pa.string()),
                    ("messages", pa.list_(MESSAGE)), ("source", pa.string()), ("domain", pa.string()),
                    ("capability", pa.string())])
# shards also carry what the mixture needs beyond the contract: a classification example's label (label balancing)
SHARD_SCHEMA = pa.schema(list(SCHEMA) + [pa.field("label", pa.string())])


def to_table(rows: list[dict], schema: pa.Schema = SCHEMA) -> pa.Table:
    return pa.Table.from_pylist([{k: r.get(k) for k in schema.names} for r in rows], schema=schema)


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


def iter_batches(path: Path, batch_size: int, columns: list[str] | None = None) -> Iterator[list[dict]]:
    """Rows of one parquet file in lists of at most `batch_size` (only that much decoded at a time)."""
    with pq.ParquetFile(path) as f:
        for batch in f.iter_batches(batch_size=batch_size, columns=columns):
            yield batch.to_pylist()
