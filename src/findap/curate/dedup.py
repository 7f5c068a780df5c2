"""Exact and MinHash near-duplicate removal, with counts per source.

In-process with datasketch: the curation corpora this stage sees on one machine (tens of thousands of documents)
fit in memory, and datatrove's four MinHash stages (signatures -> buckets -> clusters -> filter) would write and
re-read intermediate files for every run. For corpora that outgrow one machine, `datatrove_pipeline.py` builds
the same dedup from datatrove's own stages for its Local/Slurm/Ray executors (see docs/curation.md).

The first occurrence wins, so the result depends only on the order of the sources in the recipe.
Near-duplicates are looked for in CPT text by default: IT prompts share their instruction template, so their
word shingles overlap heavily even when the examples differ (exact dedup still applies to them).
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field

from datasketch import MinHash, MinHashLSH

from findap.curate.config import DedupConfig
from findap.curate.records import example_text, normalize, prompt_text

_WORD = re.compile(r"\w+")


@dataclass
class DedupReport:
    exact: Counter = field(default_factory=Counter)  # source -> exact duplicates removed
    near: Counter = field(default_factory=Counter)  # source -> near duplicates removed

    def to_dict(self) -> dict:
        return {"exact": dict(self.exact), "near": dict(self.near),
                "exact_total": sum(self.exact.values()), "near_total": sum(self.near.values())}


def shingles(text: str, n: int) -> set[bytes]:
    words = _WORD.findall(text.lower())
    if len(words) < n:
        return {" ".join(words).encode()} if words else set()
    return {" ".join(words[i : i + n]).encode() for i in range(len(words) - n + 1)}


def minhash(text: str, cfg: DedupConfig, seed: int = 1) -> MinHash:
    m = MinHash(num_perm=cfg.num_perm, seed=seed)
    m.update_batch(list(shingles(text, cfg.ngram)))
    return m


def exact_dedup(examples: list[dict], report: DedupReport) -> list[dict]:
    """CPT by text; IT by prompt: a repeated prompt teaches nothing new, and one repeated with another answer
    (FPB has such sentences) teaches a contradiction."""
    seen: set[bytes] = set()
    kept = []
    for ex in examples:
        key = hashlib.sha256(f"{ex['kind']}\x00{normalize(prompt_text(ex))}".encode()).digest()
        if key in seen:
            report.exact[ex["source"]] += 1
            continue
        seen.add(key)
        kept.append(ex)
    return kept


def near_dedup(examples: list[dict], cfg: DedupConfig, report: DedupReport, kinds=("cpt",)) -> list[dict]:
    lsh = {kind: MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm) for kind in kinds}
    kept = []
    for ex in examples:
        if ex["kind"] not in lsh:
            kept.append(ex)
            continue
        signature = minhash(example_text(ex), cfg)
        index = lsh[ex["kind"]]
        if index.query(signature):
            report.near[ex["source"]] += 1
            continue
        index.insert(ex["id"], signature)
        kept.append(ex)
    return kept


def dedup(examples: list[dict], cfg: DedupConfig, kinds=("cpt",)) -> tuple[list[dict], DedupReport]:
    """Drop exact duplicates (all kinds), then near-duplicates among `kinds`; first occurrence wins."""
    report = DedupReport()
    if cfg.exact:
        examples = exact_dedup(examples, report)
    if cfg.near:
        examples = near_dedup(examples, cfg, report, kinds)
    return examples, report
