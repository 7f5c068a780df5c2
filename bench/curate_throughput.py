"""Curation throughput: findap's in-process MinHash dedup (datasketch) vs datatrove's four-stage MinHash pipeline
(LocalPipelineExecutor), same documents, same thresholds, plus decontamination docs/s.

    PYTHONPATH=src .venv/bin/python bench/curate_throughput.py [--docs 2000] [--data ../shared/data]

Prints docs/s of each and the ratio (ours / datatrove). The machine is shared: numbers are noisy.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from findap.curate.config import CurateConfig, DedupConfig, SourceConfig
from findap.curate.datatrove_pipeline import run_local
from findap.curate.decontam import decontaminate
from findap.curate.dedup import dedup
from findap.curate.eval_texts import from_files
from findap.curate.sources import load_source
from findap.io import write_parquet


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = parser.parse_args()
    cfg = CurateConfig(data_root=args.data)
    half = args.docs // 2  # long earnings calls + short T0 texts (whose passages repeat: real near-duplicates)
    docs = load_source(SourceConfig(name="ectsum_transcripts", limit=half), cfg)[0]
    docs += load_source(SourceConfig(name="promptsource_text", limit=args.docs - half), cfg)[0]
    words = sum(len(d["text"].split()) for d in docs)
    print(f"{len(docs)} CPT documents, {words / len(docs):.0f} words on average")

    start = time.perf_counter()
    kept, report = dedup(docs, DedupConfig(exact=False))
    ours = time.perf_counter() - start
    print(f"findap dedup (datasketch, in-process): {len(docs) / ours:8.1f} docs/s, {len(docs) - len(kept)} removed")

    with tempfile.TemporaryDirectory() as tmp:
        shards = Path(tmp) / "shards"
        for i in range(4):
            write_parquet(shards / f"{i}.parquet", [{"id": d["id"], "text": d["text"]} for d in docs[i::4]])
        start = time.perf_counter()
        run_local(shards, Path(tmp) / "out", Path(tmp) / "work", DedupConfig(exact=False), workers=1)
        theirs = time.perf_counter() - start
        import pyarrow.parquet as pq

        left = sum(pq.read_metadata(p).num_rows for p in (Path(tmp) / "out").glob("*.parquet"))
    print(f"datatrove MinHash (4 stages, 1 worker): {len(docs) / theirs:8.1f} docs/s, {len(docs) - left} removed")
    print(f"ratio findap / datatrove: {theirs / ours:.2f}x")

    texts = from_files(cfg)
    start = time.perf_counter()
    decontaminate(docs, texts)
    print(f"decontamination vs {sum(map(len, texts.values()))} eval inputs: "
          f"{len(docs) / (time.perf_counter() - start):.1f} docs/s (index build included)")


if __name__ == "__main__":
    main()
