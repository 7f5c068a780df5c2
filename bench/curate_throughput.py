"""Curation throughput of the per-document blocks on real texts: the annotate step's keys (MinHash band keys and
decontamination) and the filter step's dedup, the blocks the recipe's curation runs (findap.curate.steps).

    PYTHONPATH=src .venv/bin/python bench/curate_throughput.py [--docs 2000] [--data ../shared/data]

The documents are long earnings calls and short T0 texts (whose passages repeat: real near-duplicates); the
blocks run as datatrove runs them, one generator into the next, in this process. Prints docs/s of each (the index
build included in decontamination's). The machine is shared: numbers are noisy.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from findap.curate.blocks.annotate import DocumentKeys
from findap.curate.blocks.documents import example_document
from findap.curate.blocks.ordered import DecontamFilter, DedupFilter
from findap.curate.config import CurateConfig, DedupConfig, SourceConfig
from findap.curate.eval_texts import from_files
from findap.curate.sources import load_source


def timed(label: str, docs: list, run) -> list:
    start = time.perf_counter()
    out = list(run(iter(docs)))
    print(f"{label}: {len(docs) / (time.perf_counter() - start):8.1f} docs/s, {len(docs) - len(out)} removed")
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", type=int, default=2000)
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    args = parser.parse_args()
    half = args.docs // 2
    with tempfile.TemporaryDirectory() as tmp:
        eval_path = Path(tmp) / "eval_texts.json"
        cfg = CurateConfig(data_root=args.data, dedup=DedupConfig(exact=False))
        eval_path.write_text(json.dumps({"texts": from_files(cfg)}))
        examples = load_source(SourceConfig(name="ectsum_transcripts", limit=half), cfg)[0]
        examples += load_source(SourceConfig(name="promptsource_text", limit=args.docs - half), cfg)[0]
        docs = [example_document(ex, "000_bench/00000", row) for row, ex in enumerate(examples)]
        words = sum(len(d.text.split()) for d in docs)
        print(f"{len(docs)} CPT documents, {words / len(docs):.0f} words on average")
        keyed = timed("annotate keys (MinHash bands + decontamination)", docs,
                      DocumentKeys(cfg, str(eval_path)).run)
        kept = timed("filter: dedup (near, first kept wins)", keyed, DedupFilter(cfg.dedup).run)
        timed("filter: decontamination (keys only)", kept, DecontamFilter().run)


if __name__ == "__main__":
    main()
