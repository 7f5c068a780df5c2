"""The same dedup + decontamination as datatrove pipelines, for corpora that outgrow one process.

    shards ─> ParquetReader ─> DecontamFilter ─> MinhashDedupSignature   (stage 1, one task per shard)
                                                 MinhashDedupBuckets     (stage 2, one task per bucket)
                                                 MinhashDedupCluster     (stage 3, one task)
    shards ─> ParquetReader ─> DecontamFilter ─> MinhashDedupFilter ─> ParquetWriter   (stage 4)

Every stage is a list of datatrove blocks, so any datatrove executor runs it: LocalPipelineExecutor here and in
the tests, SlurmPipelineExecutor or RayPipelineExecutor on a cluster (docs/curation.md). Executors write
completion markers per task under `logging_dir/completions/`, so a killed job reruns only unfinished tasks (keep
the task count fixed between reruns).

Two blocks are ours, and one setting differs from datatrove's default, for reasons:
- `WordsTokenizer`: datatrove's English word tokenizer needs spaCy (and its fallback loads a spaCy model); ours is
  the same `\\w+` split the in-process dedup uses, with no extra dependency and nothing to download.
- `DecontamFilter`: datatrove's n-gram decontamination (pipeline/decont) indexes lighteval tasks fetched from the
  hub; ours reads the FinEval inputs from a local JSON file ({task: [texts]}, eval_texts.py) and applies the
  same rule as decontam.py.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from datatrove.data import Document
from datatrove.pipeline.dedup.minhash import (
    MinhashConfig,
    MinhashDedupBuckets,
    MinhashDedupCluster,
    MinhashDedupFilter,
    MinhashDedupSignature,
)
from datatrove.pipeline.filters.base_filter import BaseFilter
from datatrove.pipeline.readers import ParquetReader
from datatrove.pipeline.writers import ParquetWriter
from datatrove.utils.hashing import HashConfig
from datatrove.utils.word_tokenizers import WordTokenizer

from findap.curate.config import DecontamConfig, DedupConfig

_WORD = re.compile(r"\w+")
_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")


class WordsTokenizer(WordTokenizer):
    """`\\w+` words, lower-cased by datatrove's own text normalisation before shingling."""

    def word_tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text)

    def sent_tokenize(self, text: str) -> list[str]:
        return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]

    def span_tokenize(self, text: str) -> list[tuple[int, int]]:
        return [m.span() for m in _SENTENCE.finditer(text) if m.group().strip()]


class DecontamFilter(BaseFilter):
    """Drops documents that contain an evaluation input (decontam.EvalIndex), built once per worker."""

    name = "findap decontamination"

    def __init__(self, eval_texts_path: str, cfg: DecontamConfig = DecontamConfig(), exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.eval_texts_path, self.cfg = str(eval_texts_path), cfg
        self._index = None

    def filter(self, doc: Document) -> bool | tuple[bool, str]:
        from findap.curate.decontam import EvalIndex

        if self._index is None:
            texts = json.loads(Path(self.eval_texts_path).read_text(encoding="utf-8"))
            self._index = EvalIndex(texts, self.cfg.n, self.cfg.short_text_words, self.cfg.min_overlap)
        task = self._index.match(doc.text)
        return True if task is None else (False, f"contaminated_{task}")


def minhash_config(cfg: DedupConfig, hashes_per_bucket: int = 8) -> MinhashConfig:
    """Buckets chosen so the LSH threshold (1/buckets)^(1/hashes) sits at cfg.threshold."""
    buckets = max(1, round((1 / cfg.threshold) ** hashes_per_bucket))
    # sha1, not datatrove's default xxhash: its xxhash wrapper passes str, which xxhash >= 4 rejects
    return MinhashConfig(n_grams=cfg.ngram, num_buckets=buckets, hashes_per_bucket=hashes_per_bucket,
                         hash_config=HashConfig(precision=64, hash_fc="sha1"))


def stages(shards: Path, output: Path, work: Path, dedup: DedupConfig, eval_texts_path: Path | None = None,
           decontam: DecontamConfig = DecontamConfig()) -> list[list]:
    """The four datatrove pipelines (lists of blocks) of near-dedup + decontamination."""
    config = minhash_config(dedup)
    tokenizer = WordsTokenizer()

    def read():
        # parquet, not JSONL: datatrove's JSONL blocks need orjson; pyarrow is already a findap dependency
        blocks = [ParquetReader(str(shards), glob_pattern="*.parquet")]
        if eval_texts_path is not None:
            blocks.append(DecontamFilter(str(eval_texts_path), decontam))
        return blocks

    return [
        read() + [MinhashDedupSignature(str(work / "signatures"), config=config, language=tokenizer)],
        [MinhashDedupBuckets(str(work / "signatures"), str(work / "buckets"), config=config)],
        [MinhashDedupCluster(str(work / "buckets"), str(work / "remove_ids"), config=config)],
        read() + [MinhashDedupFilter(str(work / "remove_ids")),
                  ParquetWriter(str(output), output_filename="${rank}.parquet", expand_metadata=True)],
    ]


def run_local(shards: Path, output: Path, work: Path, dedup: DedupConfig = DedupConfig(),
              eval_texts_path: Path | None = None, decontam: DecontamConfig = DecontamConfig(),
              workers: int = 1) -> None:
    """Run the four stages with datatrove's LocalPipelineExecutor; finished tasks are skipped on rerun."""
    from datatrove.executor import LocalPipelineExecutor

    tasks = len(list(Path(shards).glob("*.parquet")))
    config = minhash_config(dedup)
    plan = stages(Path(shards), Path(output), Path(work), dedup, eval_texts_path, decontam)
    counts = [tasks, config.num_buckets, 1, tasks]
    for number, (pipeline, n_tasks) in enumerate(zip(plan, counts), start=1):
        LocalPipelineExecutor(pipeline=pipeline, tasks=n_tasks, workers=min(workers, n_tasks),
                              logging_dir=str(Path(work) / "logs" / f"stage{number}")).run()
