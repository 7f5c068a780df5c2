"""Training examples as datatrove Documents, and the readers and writers of the work folder's parquet files.

An example becomes `Document(text=example_text(ex), id=ex["id"], metadata={kind, domain, source, capability,
label, messages, shard, row})`: `text` is what the filters look at (CPT text, or an IT conversation's turns),
`shard` names the shard file the example lives in ("NNN_<source>/NNNNN") and `row` is its global row key
(plan.row_key). Files are named by `shard`, so every step's outputs keep the shard layout and the global order.
"""
from __future__ import annotations

from string import Template

import pyarrow as pa
from datatrove.data import Document
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.writers import ParquetWriter

from findap.curate.plan import Plan, row_key
from findap.curate.records import example_text
from findap.curate.shards import CONTRACT_FIELDS, SCHEMA, SHARD_SCHEMA

EXAMPLE_KEYS = ("kind", "domain", "source", "capability", "label")
# one row per dropped example: which filter dropped it and why (the text, where the step carries texts)
EXCLUDED_SCHEMA = pa.schema([("id", pa.string()), ("source", pa.string()), ("kind", pa.string()),
                             ("reason", pa.string()), ("text", pa.string())])
# the annotate step's keys: a 64-bit exact key, MinHash LSH band keys (CPT), the contaminating eval task
ANNOTATED_SCHEMA = pa.schema([("id", pa.string()), ("row", pa.int64()), ("source", pa.string()),
                              ("kind", pa.string()), ("domain", pa.string()), ("exact", pa.uint64()),
                              ("bands", pa.list_(pa.uint64())), ("task", pa.string())])
SURVIVOR_SCHEMA = pa.schema([("id", pa.string()), ("row", pa.int64()), ("candidate", pa.bool_())])
# what the mixture needs of a survivor (no text): codes are made from the strings when the mixture loads them
META_SCHEMA = pa.schema([("row", pa.int64()), ("kind", pa.string()), ("domain", pa.string()),
                         ("source", pa.string()), ("capability", pa.string()), ("tokens", pa.int64()),
                         ("mix_hi", pa.uint64()), ("mix_lo", pa.uint64()), ("dev_hi", pa.uint64()),
                         ("dev_lo", pa.uint64()), ("label", pa.string()), ("copy", pa.int32())])
META_COLUMNS = tuple(META_SCHEMA.names)
PIECE_SCHEMA = pa.schema([("pos", pa.int64())] + [SCHEMA.field(name) for name in CONTRACT_FIELDS])


def example_document(example: dict, shard: str, row: int) -> Document:
    metadata = {key: example.get(key) for key in EXAMPLE_KEYS}
    if example["kind"] != "cpt":
        metadata["messages"] = example["messages"]
    return Document(text=example_text(example), id=example["id"], metadata=metadata | {"shard": shard, "row": row})


def as_example(doc: Document) -> dict:
    """The example (records.py's dict) a Document carries."""
    meta = doc.metadata
    example = {"id": doc.id, **{key: meta.get(key) for key in EXAMPLE_KEYS}}
    if meta["kind"] == "cpt":
        example["text"] = doc.text
    else:
        example["messages"] = meta["messages"]
    return example


class WarmImports:
    """A block unpickled in a Ray or Slurm worker, before the worker forks a process per task, imports the
    libraries its run needs (`warm_imports`): every forked task inherits them instead of importing them again
    (seconds per task)."""

    warm_imports: tuple[str, ...] = ()

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        for module in self.warm_imports:
            __import__(module)


class PlanStep(WarmImports, PipelineStep):
    """A block of ours that works from the curation's Plan."""

    type = "findap"

    def __init__(self, plan: Plan):
        super().__init__()
        self.plan = plan


class PlanWork(PlanStep):
    """A block whose job is not per document (a file, a selection, the outputs): it passes on any documents it is
    given, then does `work` once for its task."""

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        self.work(rank, world_size)

    def work(self, rank: int, world_size: int) -> None:
        raise NotImplementedError


# ---- writer adapters (datatrove binds them to the writer: `self` is the writer) ----------------------------
def shard_row(self, doc: Document) -> dict:
    example = as_example(doc)
    return {name: example.get(name) for name in SHARD_SCHEMA.names}


def excluded_row(self, doc: Document) -> dict:
    meta = doc.metadata
    return {"id": doc.id, "source": meta["source"], "kind": meta["kind"], "reason": meta.get("filter_reason"),
            "text": doc.text or None}


def annotated_row(self, doc: Document) -> dict:
    return {"id": doc.id} | {name: doc.metadata.get(name) for name in ANNOTATED_SCHEMA.names[1:]}


def survivor_row(self, doc: Document) -> dict:
    return {"id": doc.id, "row": doc.metadata["row"], "candidate": doc.metadata["candidate"]}


def meta_row(self, doc: Document) -> dict:
    return {name: doc.metadata.get(name) for name in META_COLUMNS}


def piece_row(self, doc: Document) -> dict:
    example = as_example(doc)
    return {"pos": doc.metadata["pos"]} | {name: example.get(name) for name in CONTRACT_FIELDS}


# ---- readers ---------------------------------------------------------------------------------------------
class FolderReader(ParquetReader):
    """ParquetReader over `<folder>/*/*.parquet` (sorted: the global order), task `rank` reading files
    rank::world_size. An empty folder is a normal state here (a source without rows, everything filtered), so
    it yields nothing instead of raising; and every row is a document, whatever its text."""

    def __init__(self, folder: str):
        super().__init__(folder, glob_pattern="*/*.parquet")

    def run(self, data=None, rank: int = 0, world_size: int = 1):
        if data:
            yield from data
        files = self.data_folder.list_files(glob_pattern=self.glob_pattern) if self.data_folder.exists("") else []
        for doc in self.read_files_shard(files[rank::world_size]):
            self.update_doc_stats(doc)
            yield doc


class ShardReader(FolderReader):
    """The converted examples (work/shards), as example Documents."""

    name = "findap shards"

    def __init__(self, folder: str, shard_rows: int):
        super().__init__(folder)
        self.shard_rows = shard_rows

    def get_document_from_dict(self, data: dict, source_file: str, id_in_file: int) -> Document:
        shard = source_file.removesuffix(".parquet")
        return example_document(data, shard, row_key(shard, id_in_file, self.shard_rows))


class ColumnsReader(FolderReader):
    """A step's per-example columns (no text): Documents with an empty text and the columns as metadata."""

    name = "findap columns"

    def get_document_from_dict(self, data: dict, source_file: str, id_in_file: int) -> Document:
        return Document(text="", id=data.pop("id"), metadata=data | {"shard": source_file.removesuffix(".parquet")})


# ---- writers ---------------------------------------------------------------------------------------------
class ShardWriter(ParquetWriter):
    """ParquetWriter to `<folder>/<shard>.parquet` with a fixed schema. Documents arrive shard after shard, so a
    shard's file is closed when the next shard begins: one file open at a time, however many shards a task has."""

    name = "findap shard files"

    def __init__(self, folder: str, schema: pa.Schema, adapter, template: str = "${shard}.parquet",
                 batch_size: int = 1000):
        super().__init__(folder, output_filename="${rank}.parquet", adapter=adapter, schema=schema,
                         max_file_size=-1, batch_size=batch_size)
        # set after the constructor: it warns about templates without ${rank}, but two tasks never share a shard
        self.output_filename = Template(template)
        self.open_name: str | None = None

    def write(self, document: Document, rank: int = 0, **kwargs) -> None:
        name = self._get_output_filename(document, rank, **kwargs)
        if self.open_name is not None and name != self.open_name:
            self.close_file(self.open_name)
        self.open_name = name
        super().write(document, rank, **kwargs)

    def close(self) -> None:
        self.open_name = None
        super().close()


def exclusion_writer(work: str, step: str) -> ParquetWriter:
    """Where a filter step's dropped examples go: work/excluded/<step>/<rank>.parquet, one row each with its reason."""
    return ParquetWriter(f"{work}/excluded/{step}", output_filename="${rank}.parquet", adapter=excluded_row,
                         schema=EXCLUDED_SCHEMA, max_file_size=-1)
