"""The judge, classifier and score steps' blocks: they read the shards' texts again, for the survivors only.

    judge       the filter step's sample, labelled by the judge (resumes batch by batch from judge_labels.jsonl)
    classifier  a head trained on the parsed labels (texts of the labelled examples only), stored as JSON numbers
    score       per shard: keep/drop each candidate by its judge label or classifier score (reasons
                `judge_dropped`, `judge_failed_dropped`, `classifier_dropped`), then token counts and the seeded
                rank keys the mixture sorts by

The encoder and the tokenizer are loaded once per block instance (once per task).
"""
from __future__ import annotations

import json
from collections import Counter

import pyarrow.parquet as pq
from datatrove.pipeline.base import PipelineStep
from datatrove.pipeline.filters.base_filter import BaseFilter

from findap.curate.blocks.documents import PlanStep, WarmImports, as_example
from findap.curate.plan import Plan
from findap.curate.records import base_id, copy_number, example_text
from findap.io import write_json

DECISIONS = ("judge_kept", "judge_dropped", "judge_failed_kept", "judge_failed_dropped", "classifier_kept",
             "classifier_dropped", "unscored_kept")


class Survivors(BaseFilter):
    """Passes the examples the filter step kept (work/filter/<shard>.parquet), marked as judge candidates or not
    as it marked them; the examples it drops were recorded with their reasons by the filters before."""

    name = "findap survivors"

    def __init__(self, plan: Plan):
        super().__init__()
        self.plan = plan
        self.shard: str | None = None
        self.candidate: dict[int, bool] = {}  # row key -> judge candidate, for the current shard's survivors

    def filter(self, doc) -> bool:
        shard = doc.metadata["shard"]
        if shard != self.shard:
            path = self.plan.dir / "filter" / f"{shard}.parquet"
            self.shard, self.candidate = shard, {}
            if path.exists():
                kept = pq.read_table(path, columns=["row", "candidate"]).to_pydict()
                self.candidate = dict(zip(kept["row"], kept["candidate"]))
        if doc.metadata["row"] not in self.candidate:
            return False
        doc.metadata["candidate"] = self.candidate[doc.metadata["row"]]
        return True


class SampleTexts(PlanStep):
    """Collects the first candidate with each wanted id; the examples, in the order of `ids`, end the run."""

    def wanted_examples(self, data, ids: list[str]) -> list[dict]:
        wanted, found = set(ids), {}
        for doc in data:
            if doc.metadata["candidate"] and doc.id in wanted and doc.id not in found:
                found[doc.id] = as_example(doc)
        return [found[i] for i in ids]


class JudgeLabels(SampleTexts):
    """Labels the sample with the judge; writes work/judge.json ({"labels", "stats"})."""

    name = "findap judge"
    warm_imports = ("findap.curate.judge_filter",)

    def run(self, data, rank: int = 0, world_size: int = 1):
        from findap.curate.judge_filter import judge_examples, judge_stats

        plan, found = self.plan, self.plan.sample()
        if not plan.quality_enabled(found["candidates"]):
            return
        sample = self.wanted_examples(data, found["sample"])
        labels = judge_examples(plan.judge_engine(), sample, plan.config.judge, plan.dir / "judge_labels.jsonl",
                                plan.seed, plan.progress)
        write_json(plan.dir / "judge.json", {"labels": labels, "stats": judge_stats(labels)})
        yield from ()


class ClassifierHead(SampleTexts):
    """Trains the head on the parsed judge labels; writes work/classifier.json ({"head", "report"})."""

    name = "findap classifier"
    warm_imports = ("findap.curate.classifier",)

    def run(self, data, rank: int = 0, world_size: int = 1):
        from findap.curate.classifier import Encoder, fit_head

        plan = self.plan
        cfg, target = plan.config, plan.dir / "classifier.json"
        if not plan.quality_enabled(plan.sample()["candidates"]):
            return
        if not cfg.classifier.enabled:
            write_json(target, {"head": None, "report": {"trained": False, "reason": "disabled"}})
            return
        labels = judge_labels(plan)
        parsed = [i for i, row in labels.items() if row["score"] is not None]
        text = {ex["id"]: example_text(ex) for ex in self.wanted_examples(data, parsed)}
        labeled = [(i, text[i], labels[i]["score"]) for i in parsed]
        encoder = Encoder(cfg.classifier.encoder) if len(labeled) >= cfg.classifier.min_labels else None
        head, report = fit_head(labeled, cfg.classifier, cfg.judge.threshold, plan.seed, encoder, plan.progress)
        write_json(target, {"head": head, "report": report})
        yield from ()


def judge_labels(plan: Plan) -> dict[str, dict]:
    return json.loads((plan.dir / "judge.json").read_text(encoding="utf-8"))["labels"]


class QualityScores(PlanStep):
    """Per shard (the classifier embeds a shard's unlabelled candidates together): each candidate's score and
    decision (metadata `quality`), written to work/score/<shard>.json ({"decisions": counts, "scores": [[id,
    score]]}) for the manifest and quality_scores.json."""

    name = "findap quality scores"

    def __init__(self, plan: Plan):
        super().__init__(plan)
        self.labels = self.head = self.encoder = None

    def run(self, data, rank: int = 0, world_size: int = 1):
        if not self.plan.quality_enabled(self.plan.sample()["candidates"]):
            yield from data
            return
        self.labels = judge_labels(self.plan)
        self.head = json.loads((self.plan.dir / "classifier.json").read_text(encoding="utf-8"))["head"]
        shard, docs = None, []
        for doc in data:
            if doc.metadata["shard"] != shard and docs:
                yield from self.decide(shard, docs)
                docs = []
            shard = doc.metadata["shard"]
            docs.append(doc)
        if docs:
            yield from self.decide(shard, docs)

    def decide(self, shard: str, docs: list):
        candidates = [doc for doc in docs if doc.metadata["candidate"]]
        if candidates:
            scores, counts = self.scores(candidates)
            write_json(self.plan.dir / "score" / f"{shard}.json",
                       {"decisions": dict(counts), "scores": [[doc.id, scores[doc.id][0]] for doc in candidates]})
            for doc in candidates:
                doc.metadata["quality"] = scores[doc.id][1]
        yield from docs

    def scores(self, candidates: list) -> tuple[dict[str, tuple[float | None, str]], Counter]:
        """{id: (score, decision)} and the decision counts."""
        from findap.curate.classifier import Encoder, predict_head

        cfg, labels = self.plan.config, self.labels
        unlabeled = [doc for doc in candidates if doc.id not in labels]
        predicted: dict[str, float] = {}
        if self.head is not None and unlabeled:
            self.encoder = self.encoder or Encoder(cfg.classifier.encoder)
            X = self.encoder.encode([doc.text for doc in unlabeled], cfg.classifier.batch_size,
                                    cfg.classifier.max_chars)
            predicted = {doc.id: float(s) for doc, s in zip(unlabeled, predict_head(self.head, X))}
        out, counts, threshold = {}, Counter(), cfg.judge.threshold
        for doc in candidates:
            i = doc.id
            if i in labels:
                score = labels[i]["score"]
                if score is None:
                    decision = "judge_failed_kept" if cfg.judge.on_failure == "keep" else "judge_failed_dropped"
                else:
                    decision = "judge_kept" if score >= threshold else "judge_dropped"
            elif i in predicted:
                score = predicted[i]
                keep = score >= threshold or not cfg.classifier.filter
                decision = "classifier_kept" if keep else "classifier_dropped"
            else:
                score, decision = None, "unscored_kept"  # no classifier could be trained: unfiltered, and said so
            counts[decision] += 1
            out[i] = (score, decision)
        return out, counts


class QualityFilter(BaseFilter):
    """Drops the candidates QualityScores decided against (the decision is the reason)."""

    name = "findap quality filter"

    def filter(self, doc) -> bool | tuple[bool, str]:
        decision = doc.metadata.get("quality")
        return True if decision is None or decision.endswith("_kept") else (False, decision)


class TokenCounts(WarmImports, PipelineStep):
    """Token counts with the recipe model's tokenizer (metadata `tokens`), 512 examples per tokenizer call."""

    name = "findap token counts"
    warm_imports = ("findap.curate.tokens", "findap.curate.mixture", "transformers")
    type = "findap"

    def __init__(self, plan: Plan, batch_size: int = 512):
        super().__init__()
        self.plan, self.batch_size = plan, batch_size
        self.tokenizer = None

    def run(self, data, rank: int = 0, world_size: int = 1):
        from datatrove.utils.batching import batched

        from findap.curate.tokens import count_tokens

        for batch in batched(data, self.batch_size):
            if self.tokenizer is None:
                self.tokenizer = self.plan.tokenizer or load_tokenizer(self.plan.model)
            with self.track_time("batch"):
                counts = count_tokens([as_example(doc) for doc in batch], self.tokenizer)
            for doc in batch:
                doc.metadata["tokens"] = counts[doc.id]
                self.stat_update("tokens", value=counts[doc.id])
            yield from batch


def load_tokenizer(model: str):
    from findap.models import load_tokenizer as load

    return load(model)


class MixtureKeys(PipelineStep):
    """The seeded rank keys the mixture sorts by (mixture.rank_key), and the copy number. A copy's dev key is its
    original's, so the dev split keeps them on one side."""

    name = "findap mixture keys"
    type = "findap"

    def __init__(self, seed: int):
        super().__init__()
        self.seed = seed

    def run(self, data, rank: int = 0, world_size: int = 1):
        from findap.curate.mixture import rank_key

        for doc in data:
            meta = doc.metadata
            (meta["mix_hi"], meta["mix_lo"]), (meta["dev_hi"], meta["dev_lo"]) = (
                rank_key(self.seed, doc.id), rank_key(self.seed + 1, base_id(doc.id)))
            meta["copy"] = copy_number(doc.id)
            yield doc
