"""The annotate step's blocks (one shard at a time, in parallel): the min-length filter, then each example's keys
for the ordered filter step, so that step never touches a text.

Keys: a 64-bit exact key (kind + normalised prompt text, all kinds), the MinHash LSH band keys (CPT, when near
dedup is on) and the evaluation task the example copies (None: clean). The MinHash permutations and the
evaluation index are built once per block instance, i.e. once per task.
"""
from __future__ import annotations

import json

from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter

from findap.curate.blocks.documents import WarmImports, as_example
from findap.curate.config import CurateConfig


class MinWords(BaseFilter):
    """Drops CPT texts shorter than curate.min_words words (reason `min_words`)."""

    name = "findap min words"

    def __init__(self, min_words: int, exclusion_writer=None):
        super().__init__(exclusion_writer)
        self.min_words = min_words

    def filter(self, doc) -> bool | tuple[bool, str]:
        if doc.metadata["kind"] == "cpt" and len(doc.text.split()) < self.min_words:
            return False, "min_words"
        return True


class DocumentKeys(WarmImports, PipelineStep):
    """Adds `exact`, `bands` and `task` to each example's metadata."""

    name = "findap dedup and decontamination keys"
    warm_imports = ("findap.curate.dedup", "findap.curate.decontam")
    type = "findap"

    def __init__(self, cfg: CurateConfig, eval_texts_path: str):
        super().__init__()
        self.cfg, self.eval_texts_path = cfg, eval_texts_path
        self.doc_keys = self.index = None

    def run(self, data, rank: int = 0, world_size: int = 1):
        from findap.curate.dedup import DocKeys, exact_key

        cfg = self.cfg
        self.doc_keys = self.doc_keys or DocKeys(cfg.dedup)
        if cfg.decontam.enabled and self.index is None:
            self.index = self.eval_index()
        for doc in data:
            kind = doc.metadata["kind"]
            with self.track_time():
                doc.metadata["exact"] = exact_key(as_example(doc))
                near = cfg.dedup.near and kind == "cpt"
                doc.metadata["bands"] = self.doc_keys.band_keys(doc.text) if near else None
                doc.metadata["task"] = self.index.match(doc.text) if self.index is not None else None
            yield doc

    def eval_index(self):
        from findap.curate.decontam import EvalIndex

        d = self.cfg.decontam
        with open(self.eval_texts_path, encoding="utf-8") as f:
            texts = json.load(f)["texts"]
        return EvalIndex(texts, d.n, d.short_text_words, d.min_overlap)
