"""Exact and MinHash near-duplicate removal, with counts per source, in two parts.

`DocKeys` turns each example into its keys in parallel shard tasks (the annotate step: a 64-bit exact key, and for
CPT the LSH band keys of its MinHash signature, the bands datasketch's MinHashLSH would use), then `StreamDedup`
decides keep/drop in one ordered pass holding only those keys (the filter step), in compact sorted uint64 arrays
(`KeySet`), never the documents. A near-duplicate is a document sharing any band with an earlier kept one,
exactly MinHashLSH.query's rule; 64-bit keys make a false match about 1e-8 likely at a million documents.

The first occurrence wins, so the result depends only on the order of the sources in the recipe.
Near-duplicates are looked for in CPT text by default: IT prompts share their instruction template, so their
word shingles overlap heavily even when the examples differ (exact dedup still applies to them).
"""
from __future__ import annotations

import hashlib
import re
from collections import Counter
from dataclasses import dataclass, field

import numpy as np
from datasketch import MinHash
from datasketch.lsh import _optimal_param

from findap.curate.config import DedupConfig
from findap.curate.records import normalize, prompt_text

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


def exact_key(example: dict) -> int:
    """64 bits of sha256(kind + normalised prompt text): CPT by text, IT by prompt (a repeated prompt teaches nothing
    new, and one repeated with another answer, as FPB has, teaches a contradiction)."""
    digest = hashlib.sha256(f"{example['kind']}\x00{normalize(prompt_text(example))}".encode()).digest()
    return int.from_bytes(digest[:8], "little")


class DocKeys:
    """Per-document dedup keys; the MinHash permutations are drawn once, not per document."""

    def __init__(self, cfg: DedupConfig, seed: int = 1):
        self.cfg = cfg
        template = MinHash(num_perm=cfg.num_perm, seed=seed)
        self.seed, self.scheme, self.permutations = seed, template.scheme, template.permutations
        # the (bands, rows) MinHashLSH(threshold, num_perm) picks with its default weights
        self.bands, self.rows = _optimal_param(cfg.threshold, cfg.num_perm, 0.5, 0.5)

    def signature(self, text: str) -> MinHash:
        m = MinHash(num_perm=self.cfg.num_perm, seed=self.seed, permutations=self.permutations, scheme=self.scheme)
        m.update_batch(list(shingles(text, self.cfg.ngram)))
        return m

    def band_keys(self, text: str) -> list[int]:
        values = self.signature(text).hashvalues
        keys = []
        for band in range(self.bands):
            chunk = bytes(values[band * self.rows : (band + 1) * self.rows].byteswap().data)
            keys.append(int.from_bytes(hashlib.blake2b(bytes([band]) + chunk, digest_size=8).digest(), "little"))
        return keys


class KeySet:
    """A set of uint64 keys in sorted numpy runs plus a small Python set: ~8 bytes a key instead of ~70."""

    def __init__(self, buffer: int = 1 << 17):
        self.sorted = np.zeros(0, dtype=np.uint64)
        self.recent: set[int] = set()
        self.buffer = buffer

    def __len__(self) -> int:
        return len(self.sorted) + len(self.recent)

    def contains_any(self, keys: list[int]) -> bool:
        if any(k in self.recent for k in keys):
            return True
        if not len(self.sorted):
            return False
        probe = np.asarray(keys, dtype=np.uint64)
        at = np.searchsorted(self.sorted, probe)
        at[at == len(self.sorted)] = 0
        return bool((self.sorted[at] == probe).any())

    def add_all(self, keys: list[int]) -> None:
        self.recent.update(keys)
        if len(self.recent) >= self.buffer:
            merged = np.concatenate([self.sorted, np.fromiter(self.recent, dtype=np.uint64, count=len(self.recent))])
            merged.sort(kind="stable")
            self.sorted, self.recent = merged, set()


class StreamDedup:
    """Exact dedup (all kinds), then near dedup (CPT), in one ordered pass over keys: the first one wins."""

    def __init__(self, cfg: DedupConfig, kinds=("cpt",)):
        self.cfg, self.kinds = cfg, kinds
        self.exact, self.near = KeySet(), KeySet()
        self.report = DedupReport()

    def duplicate(self, source: str, kind: str, exact: int, bands: list[int] | None) -> str | None:
        """"exact" or "near" when the example repeats an earlier kept one (counted in the report), else None."""
        if self.cfg.exact:
            if self.exact.contains_any([exact]):
                self.report.exact[source] += 1
                return "exact"
            self.exact.add_all([exact])
        if self.cfg.near and kind in self.kinds:
            if self.near.contains_any(bands):
                self.report.near[source] += 1
                return "near"
            self.near.add_all(bands)
        return None

    def keep(self, source: str, kind: str, exact: int, bands: list[int] | None) -> bool:
        return self.duplicate(source, kind, exact, bands) is None
