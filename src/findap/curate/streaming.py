"""The curation as steps over parquet shards, each a datatrove task function (executors.py runs them).

    convert     curate.tasks    sources -> work/shards/NNN_<source>/NNNNN.parquet, and the eval texts
    keys        curate.tasks    per shard: min-length flag, exact key, MinHash band keys (CPT), contaminating task
    filter      1 task          one ordered pass over the keys: dedup, decontamination, judge candidates and sample
    judge       1 task          the judge labels the sample (an endpoint gets many requests in flight)
    classifier  1 task          a head trained on the labels, stored as JSON numbers
    score       curate.tasks    per shard: keep/drop by label or classifier score, token counts, seeded rank keys
    mixture     1 task          each group's selection from columns (no texts): output row numbers
    gather      curate.tasks    per shard: the chosen rows, with their positions in each output
    write       1 task          the pieces merged in position order into <group>/{train,dev}.parquet

What one task holds is bounded by a shard (curate.shard_rows), the eval sets, the judge sample, or per-document
keys and columns (~100 bytes a document in filter and mixture), never by the corpus's texts. Every task writes
its outputs atomically and the executor marks it complete, so a rerun skips finished work. The decisions are the
ones the list-based functions (dedup.py, decontam.py, mixture.py) make, in the same order, so the outputs do not
depend on the executor, the task count or the shard size.
"""
from __future__ import annotations

import hashlib
import heapq
import json
import logging
import shutil
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from findap.curate.config import CurateConfig
from findap.curate.records import base_id, copy_number, example_text
from findap.curate.shards import (
    CONTRACT_FIELDS, SCHEMA, ChunkedParquetWriter, iter_batches, read_rows, write_shards, write_table_atomic,
)
from findap.io import write_json, write_text

log = logging.getLogger(__name__)

KEYS_SCHEMA = pa.schema([("short", pa.bool_()), ("exact", pa.uint64()), ("bands", pa.list_(pa.uint64())),
                         ("task", pa.string())])
MASK_SCHEMA = pa.schema([("keep", pa.bool_()), ("candidate", pa.bool_())])
META_COLUMNS = ("row", "kind", "domain", "source", "capability", "tokens", "mix_hi", "mix_lo", "dev_hi", "dev_lo",
                "label", "copy")
PIECE_SCHEMA = pa.schema([("pos", pa.int64())] + [SCHEMA.field(name) for name in CONTRACT_FIELDS])
_CACHE: dict = {}  # per-process: tokenizer, eval index, dedup keys, encoder (a worker runs many tasks)


@dataclass
class Plan:
    """Everything a task needs, picklable for the executors (Ray and Slurm send it to other processes)."""

    cfg: dict  # CurateConfig.model_dump()
    out_dir: str
    work: str
    model: str
    seed: int
    progress: bool = False
    tokenizer: object = None  # an in-process caller may hand one in; workers load `model`'s otherwise
    make_judge: Callable[[], object] | None = None
    used_sources: list[str] = field(default_factory=list)

    @cached_property
    def config(self) -> CurateConfig:
        return CurateConfig.model_validate(self.cfg)

    @property
    def dir(self) -> Path:
        return Path(self.work)

    def quality_enabled(self, candidates: int) -> bool:
        judge = self.config.judge
        return judge.enabled and candidates > 0 and judge.sample_size > 0


@dataclass(frozen=True)
class Shard:
    id: str  # "NNN_<source>-NNNNN"
    path: Path
    offset: int  # global row number of its first row
    rows: int


# ---- shards ----------------------------------------------------------------------------------------------
def source_folder(plan: Plan, number: int) -> Path:
    return plan.dir / "shards" / f"{number:03d}_{plan.used_sources[number]}"


def source_reports(plan: Plan) -> dict[str, dict]:
    return {name: json.loads((source_folder(plan, i) / "report.json").read_text(encoding="utf-8"))
            for i, name in enumerate(plan.used_sources)}


def all_shards(plan: Plan) -> list[Shard]:
    """Every shard in the global order: sources as the recipe lists them, then shard number."""
    if "shards" not in _CACHE.get(plan.work, {}):
        out, offset = [], 0
        for number in range(len(plan.used_sources)):
            folder = source_folder(plan, number)
            done = json.loads((folder / "report.json").read_text(encoding="utf-8"))
            for name, rows in done["shards"]:
                out.append(Shard(f"{folder.name}-{Path(name).stem}", folder / name, offset, rows))
                offset += rows
        _CACHE.setdefault(plan.work, {})["shards"] = out
    return _CACHE[plan.work]["shards"]


def my_shards(plan: Plan, rank: int, world_size: int) -> list[Shard]:
    return all_shards(plan)[rank::world_size]


def cached(key, make):
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


# ---- convert ---------------------------------------------------------------------------------------------
def convert(plan: Plan, rank: int, world_size: int) -> None:
    """Items 0..n-1 are the sources (each into its shards, report.json last: the source's marker), item n the
    evaluation texts decontamination compares against; task `rank` does items rank, rank + world_size, ..."""
    for item in range(rank, len(plan.used_sources) + 1, world_size):
        if item == len(plan.used_sources):
            gather_eval_texts_file(plan)
        else:
            convert_source(plan, item)


def convert_source(plan: Plan, number: int) -> None:
    from findap.curate.sources import iter_source

    cfg = plan.config
    folder = source_folder(plan, number)
    if (folder / "report.json").exists():
        return
    spec = {s.name: s for s in cfg.sources}[plan.used_sources[number]]
    rows, report = iter_source(spec, cfg)
    shards = write_shards(folder, rows, cfg.shard_rows)
    done = asdict(report())
    if not done["copies"]:  # only label balancing makes copies; the manifest names them only then
        del done["copies"]
    write_json(folder / "report.json", done | {"shards": shards})


def gather_eval_texts_file(plan: Plan) -> None:
    path = plan.dir / "eval_texts.json"
    if path.exists() or not plan.config.decontam.enabled:
        return
    from findap.curate.eval_texts import gather_eval_texts

    texts, origin, skipped = gather_eval_texts(plan.config)
    write_text(path, json.dumps({"texts": texts, "origin": origin, "skipped": skipped}, ensure_ascii=False))


def eval_index(plan: Plan):
    from findap.curate.decontam import EvalIndex

    d = plan.config.decontam

    def build():
        texts = json.loads((plan.dir / "eval_texts.json").read_text(encoding="utf-8"))["texts"]
        return EvalIndex(texts, d.n, d.short_text_words, d.min_overlap)

    return cached(("eval_index", plan.work), build)


# ---- keys ------------------------------------------------------------------------------------------------
def keys(plan: Plan, rank: int, world_size: int) -> None:
    """Per row: dropped as too short? its exact key, its band keys (CPT, when near dedup is on), and the eval
    task it copies (None: clean). Short rows are dropped before anything else looks at them, so they get no keys."""
    from findap.curate.dedup import DocKeys, exact_key

    cfg = plan.config
    doc_keys = cached(("doc_keys", json.dumps(cfg.dedup.model_dump())), lambda: DocKeys(cfg.dedup))
    index = eval_index(plan) if cfg.decontam.enabled else None
    for shard in my_shards(plan, rank, world_size):
        target = plan.dir / "keys" / f"{shard.id}.parquet"
        if target.exists():
            continue
        out = {"short": [], "exact": [], "bands": [], "task": []}
        for ex in read_rows(shard.path):
            short = ex["kind"] == "cpt" and len(ex["text"].split()) < cfg.min_words
            out["short"].append(short)
            near = not short and cfg.dedup.near and ex["kind"] == "cpt"
            text = example_text(ex)
            out["exact"].append(0 if short else exact_key(ex))
            out["bands"].append(doc_keys.band_keys(text) if near else None)
            out["task"].append(index.match(text) if index is not None and not short else None)
        write_table_atomic(target, pa.table(out, schema=KEYS_SCHEMA))


# ---- filter ----------------------------------------------------------------------------------------------
class SampleHeap:
    """pick_sample's `size` smallest seeded ranks, kept while streaming (ties: the earlier example wins)."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.heap, self.seen = size, seed, [], 0

    def offer(self, example_id: str) -> None:
        rank = int(hashlib.sha256(f"{self.seed}\x00{example_id}".encode()).hexdigest(), 16)
        item = (-rank, -self.seen, example_id)  # max-heap on (rank, arrival)
        self.seen += 1
        if len(self.heap) < self.size:
            heapq.heappush(self.heap, item)
        elif item > self.heap[0]:
            heapq.heapreplace(self.heap, item)

    def ids(self) -> list[str]:
        return [i for _, _, i in sorted(self.heap, reverse=True)]


def filter_pass(plan: Plan, rank: int, world_size: int) -> None:
    """min-length, exact + near dedup, decontamination, in the global order, holding keys only."""
    from findap.curate.dedup import StreamDedup

    cfg = plan.config
    dedup = StreamDedup(cfg.dedup)
    short: dict[str, int] = {}
    removed: dict[str, Counter] = defaultdict(Counter)
    judge = cfg.judge
    sample = SampleHeap(judge.sample_size, plan.seed)
    n_input = candidates = 0
    for shard in all_shards(plan):
        meta = pq.read_table(shard.path, columns=["id", "kind", "domain", "source"]).to_pydict()
        shard_keys = pq.read_table(plan.dir / "keys" / f"{shard.id}.parquet").to_pydict()
        keep, candidate = [False] * shard.rows, [False] * shard.rows
        for i, (is_short, exact, bands, task) in enumerate(zip(*shard_keys.values())):
            source, kind = meta["source"][i], meta["kind"][i]
            if is_short:
                short[source] = short.get(source, 0) + 1
                continue
            # a copy made for label balancing repeats its original on purpose: dedup must not see it (nor may it
            # hide a later example); without its original the mixture drops it, so it is not judged either
            copy = copy_number(meta["id"][i]) > 0
            if not copy and not dedup.keep(source, kind, exact, bands):
                continue
            if task is not None:
                removed[task][source] += 1
                continue
            keep[i] = True
            if not copy and kind in judge.kinds and meta["domain"][i] in judge.domains:
                candidate[i] = True
                candidates += 1
                sample.offer(meta["id"][i])
        n_input += shard.rows
        write_table_atomic(plan.dir / "filter" / f"{shard.id}.parquet",
                           pa.table({"keep": keep, "candidate": candidate}, schema=MASK_SCHEMA))
    write_json(plan.dir / "filter.json", {
        "input_docs": n_input, "min_words": short, "dedup": dedup.report.to_dict(),
        "removed": {task: dict(counts) for task, counts in removed.items()}, "candidates": candidates,
        "sample": sample.ids() if plan.quality_enabled(candidates) else []})


def filter_result(plan: Plan) -> dict:
    return cached(("filter", plan.work), lambda: json.loads((plan.dir / "filter.json").read_text(encoding="utf-8")))


def masked_rows(plan: Plan, shard: Shard) -> Iterator[tuple[int, dict, bool]]:
    """(row number in the shard, example, is a judge candidate) of the rows that passed filter_pass."""
    mask = pq.read_table(plan.dir / "filter" / f"{shard.id}.parquet").to_pydict()
    if not any(mask["keep"]):
        return
    for i, ex in enumerate(read_rows(shard.path)):
        if mask["keep"][i]:
            yield i, ex, mask["candidate"][i]


def sample_examples(plan: Plan, ids: list[str]) -> list[dict]:
    """The candidates with these ids, in the order of `ids` (one pass over the shards; holds the sample only)."""
    wanted, found = set(ids), {}
    for shard in all_shards(plan):
        for _, ex, is_candidate in masked_rows(plan, shard):
            if is_candidate and ex["id"] in wanted and ex["id"] not in found:
                found[ex["id"]] = ex
    return [found[i] for i in ids]


# ---- judge and classifier ---------------------------------------------------------------------------------
def judge(plan: Plan, rank: int, world_size: int) -> None:
    """Label the sample; resumes batch by batch from judge_labels.jsonl."""
    from findap.curate.judge_filter import judge_examples, judge_stats

    cfg, found = plan.config, filter_result(plan)
    target = plan.dir / "judge.json"
    if not plan.quality_enabled(found["candidates"]) or target.exists():
        return
    sample = sample_examples(plan, found["sample"])
    if plan.make_judge is not None:
        engine = plan.make_judge()
    else:
        from findap.curate.curation import default_judge

        engine = default_judge(cfg, plan.model)()
    labels = judge_examples(engine, sample, cfg.judge, plan.dir / "judge_labels.jsonl", plan.seed, plan.progress)
    write_json(target, {"labels": labels, "stats": judge_stats(labels)})


def judge_labels(plan: Plan) -> dict[str, dict]:
    return cached(("labels", plan.work),
                  lambda: json.loads((plan.dir / "judge.json").read_text(encoding="utf-8"))["labels"])


def classifier(plan: Plan, rank: int, world_size: int) -> None:
    """Train the head on the parsed judge labels (texts fetched for the sample only)."""
    from findap.curate.classifier import fit_head

    cfg, found = plan.config, filter_result(plan)
    target = plan.dir / "classifier.json"
    if not plan.quality_enabled(found["candidates"]) or target.exists():
        return
    if not cfg.classifier.enabled:
        write_json(target, {"head": None, "report": {"trained": False, "reason": "disabled"}})
        return
    labels = judge_labels(plan)
    parsed = [i for i, row in labels.items() if row["score"] is not None]
    text = {ex["id"]: example_text(ex) for ex in sample_examples(plan, parsed)}
    labeled = [(i, text[i], labels[i]["score"]) for i in parsed]
    encoder = encoder_for(plan) if len(labeled) >= cfg.classifier.min_labels else None
    head, report = fit_head(labeled, cfg.classifier, cfg.judge.threshold, plan.seed, encoder, plan.progress)
    write_json(target, {"head": head, "report": report})


def encoder_for(plan: Plan):
    from findap.curate.classifier import Encoder

    return cached(("encoder", plan.config.classifier.encoder), lambda: Encoder(plan.config.classifier.encoder))


# ---- score -----------------------------------------------------------------------------------------------
DECISIONS = ("judge_kept", "judge_dropped", "judge_failed_kept", "judge_failed_dropped", "classifier_kept",
             "classifier_dropped", "unscored_kept")


def decide(plan: Plan, candidates: list[dict]) -> tuple[list[tuple[str, object]], set[str], Counter]:
    """quality_block's keep/drop for a shard's candidates: ([(id, score)], dropped ids, decision counts)."""
    from findap.curate.classifier import predict_head

    cfg = plan.config
    labels = judge_labels(plan)
    head = cached(("head", plan.work),
                  lambda: json.loads((plan.dir / "classifier.json").read_text(encoding="utf-8"))["head"])
    unlabeled = [ex for ex in candidates if ex["id"] not in labels]
    predicted: dict[str, float] = {}
    if head is not None and unlabeled:
        X = encoder_for(plan).encode([example_text(ex) for ex in unlabeled], cfg.classifier.batch_size,
                                     cfg.classifier.max_chars)
        predicted = {ex["id"]: float(s) for ex, s in zip(unlabeled, predict_head(head, X))}
    scores, dropped, counts = [], set(), Counter()
    threshold = cfg.judge.threshold
    for ex in candidates:
        i = ex["id"]
        if i in labels:
            score = labels[i]["score"]
            if score is None:
                keep = cfg.judge.on_failure == "keep"
                counts["judge_failed_kept" if keep else "judge_failed_dropped"] += 1
            else:
                keep = score >= threshold
                counts["judge_kept" if keep else "judge_dropped"] += 1
        elif i in predicted:
            score = predicted[i]
            keep = score >= threshold or not cfg.classifier.filter
            counts["classifier_kept" if keep else "classifier_dropped"] += 1
        else:
            score, keep = None, True  # no classifier could be trained: unfiltered, and said so in the manifest
            counts["unscored_kept"] += 1
        scores.append((i, score))
        if not keep:
            dropped.add(i)
    return scores, dropped, counts


def tokenizer_for(plan: Plan):
    if plan.tokenizer is not None:
        return plan.tokenizer
    from findap.models import load_tokenizer

    return cached(("tokenizer", plan.model), lambda: load_tokenizer(plan.model))


def score(plan: Plan, rank: int, world_size: int) -> None:
    """Per shard: the quality decision for its candidates, then token counts and rank keys of the survivors."""
    from findap.curate.mixture import rank_key
    from findap.curate.tokens import count_tokens

    quality = plan.quality_enabled(filter_result(plan)["candidates"])
    for shard in my_shards(plan, rank, world_size):
        target = plan.dir / "score" / f"{shard.id}.parquet"
        if target.exists():
            continue
        kept = list(masked_rows(plan, shard))
        scores, dropped, counts = [], set(), Counter()
        if quality:
            scores, dropped, counts = decide(plan, [ex for _, ex, is_candidate in kept if is_candidate])
        survivors = [(i, ex) for i, ex, _ in kept if ex["id"] not in dropped]
        tokens = count_tokens([ex for _, ex in survivors], tokenizer_for(plan))
        columns: dict[str, list] = {name: [] for name in META_COLUMNS}
        for i, ex in survivors:
            # a copy's dev key is its original's: dev_split keeps them on one side
            mix, dev = rank_key(plan.seed, ex["id"]), rank_key(plan.seed + 1, base_id(ex["id"]))
            for name, value in (("row", shard.offset + i), ("kind", ex["kind"]), ("domain", ex["domain"]),
                                ("source", ex["source"]), ("capability", ex["capability"]),
                                ("tokens", tokens[ex["id"]]), ("mix_hi", mix[0]), ("mix_lo", mix[1]),
                                ("dev_hi", dev[0]), ("dev_lo", dev[1]), ("label", ex.get("label")),
                                ("copy", copy_number(ex["id"]))):
                columns[name].append(value)
        write_json(plan.dir / "score" / f"{shard.id}.json", {"decisions": dict(counts), "scores": scores})
        write_table_atomic(target, pa.table(columns, schema=META_SCHEMA))


META_SCHEMA = pa.schema([("row", pa.int64()), ("kind", pa.string()), ("domain", pa.string()),
                         ("source", pa.string()), ("capability", pa.string()), ("tokens", pa.int64()),
                         ("mix_hi", pa.uint64()), ("mix_lo", pa.uint64()), ("dev_hi", pa.uint64()),
                         ("dev_lo", pa.uint64()), ("label", pa.string()), ("copy", pa.int32())])


def decision_counts(plan: Plan) -> dict[str, int]:
    total = Counter()
    for shard in all_shards(plan):
        total.update(json.loads((plan.dir / "score" / f"{shard.id}.json").read_text(encoding="utf-8"))["decisions"])
    return {name: total.get(name, 0) for name in DECISIONS}


# ---- mixture ---------------------------------------------------------------------------------------------
def load_pool(plan: Plan):
    """The survivors' columns, in the global order, with the text columns as small integer codes."""
    from findap.curate.mixture import MixPool

    names: dict[str, list[str]] = {c: [] for c in ("kind", "domain", "source", "capability", "label")}
    codes: dict[str, dict[str, int]] = {c: {} for c in names}
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    for shard in all_shards(plan):
        table = pq.read_table(plan.dir / "score" / f"{shard.id}.parquet")
        for column in META_COLUMNS:
            values = table.column(column)
            if column in names:
                lookup = codes[column]
                for value in values.unique().to_pylist():
                    if value not in lookup:
                        lookup[value] = len(names[column])
                        names[column].append(value)
                values = [lookup[v] for v in values.to_pylist()]
                parts[column].append(np.asarray(values, dtype=np.int32))
            else:
                parts[column].append(values.to_numpy())
    dtypes = {"row": np.int64, "tokens": np.int64, "label": np.int32, "copy": np.int32}
    columns = {c: np.concatenate(parts[c]) if parts[c] else np.zeros(0, dtype=dtypes.get(c, np.uint64))
               for c in META_COLUMNS}
    return MixPool(columns, names)


def mixture(plan: Plan, rank: int, world_size: int) -> None:
    """Each group's selection (as _write_groups makes it), saved as global row numbers in output order."""
    from findap.curate.mixture import (
        balance_labels_columns, build_mixture_columns, cap_labels_columns, dev_split_columns, label_report,
        label_rows_columns, mixture_stats_columns, share_warnings,
    )

    cfg = plan.config
    if (plan.dir / "mixture.json").exists():
        return
    pool = load_pool(plan)
    balanced, balance = cfg.balanced_sources(), cfg.balance_labels
    source_of = np.asarray(pool.names["source"], dtype=object)
    out, chosen_by_group, split_by_group = {}, {}, {}
    everything = np.arange(len(pool.c["row"]), dtype=np.int64)
    for group in cfg.groups:
        names = set(cfg.group_sources(group.name))
        in_group = np.asarray([s in names for s in source_of], dtype=bool)
        positions = everything[in_group[pool.c["source"]]] if len(source_of) else everything
        if group.extends:
            extra = set(group.sources) - set(cfg.group_sources(group.extends))
            is_extra = np.asarray([s in extra for s in source_of], dtype=bool)
            added = positions[is_extra[pool.c["source"][positions]]] if len(source_of) else positions
            added = balance_labels_columns(pool, added, balanced, balance)
            plan_info = {"extends": group.extends, "added_docs": len(added)}
            # as _write_groups: the parent's split stands, only the additions are split
            parent_train, parent_dev = split_by_group[group.extends]
            added_train, added_dev = dev_split_columns(pool, added, cfg.mixture)
            capped = cap_labels_columns(pool, added_train, balanced, balance)
            added = added[~np.isin(added, np.setdiff1d(added_train, capped))]
            chosen = np.concatenate([chosen_by_group[group.extends], added])
            train, dev = np.concatenate([parent_train, capped]), np.concatenate([parent_dev, added_dev])
        else:
            chosen, plan_info = build_mixture_columns(pool, balance_labels_columns(pool, positions, balanced, balance),
                                                      cfg.mixture)
            train, dev = dev_split_columns(pool, chosen, cfg.mixture)
            capped = cap_labels_columns(pool, train, balanced, balance)
            chosen, train = chosen[~np.isin(chosen, np.setdiff1d(train, capped))], capped
        chosen_by_group[group.name] = chosen
        split_by_group[group.name] = train, dev
        for split, picked in (("train", train), ("dev", dev)):
            save_rows(plan.dir / "selection" / f"{group.name}.{split}.npy", pool.c["row"][picked])
        stats = mixture_stats_columns(pool, chosen)
        out[group.name] = {"sources": sorted(names), "pool_docs": len(positions), "plan": plan_info,
                           "train": mixture_stats_columns(pool, train), "dev_docs": len(dev), "all": stats,
                           "warnings": share_warnings(stats, cfg.mixture)}
        if balanced & names:
            out[group.name]["labels"] = label_report(
                label_rows_columns(pool, positions), label_rows_columns(pool, train), label_rows_columns(pool, dev),
                balanced & names, balance)
    write_json(plan.dir / "mixture.json", out)


def save_rows(path: Path, rows: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, rows.astype(np.int64), allow_pickle=False)
    tmp.replace(path)


def outputs(plan: Plan) -> list[str]:
    return [f"{g.name}.{split}" for g in plan.config.groups for split in ("train", "dev")]


# ---- gather and write ------------------------------------------------------------------------------------
def gather(plan: Plan, rank: int, world_size: int) -> None:
    """Per shard and output: the chosen rows with their output positions, in position order."""
    selections = {name: np.load(plan.dir / "selection" / f"{name}.npy", allow_pickle=False)
                  for name in outputs(plan)}
    for shard in my_shards(plan, rank, world_size):
        marker = plan.dir / "pieces" / f"{shard.id}.done"
        if marker.exists():
            continue
        rows = None
        for name, selection in selections.items():
            positions = np.nonzero((selection >= shard.offset) & (selection < shard.offset + shard.rows))[0]
            if not len(positions):
                continue
            rows = rows if rows is not None else read_rows(shard.path)
            picked = [rows[i] | {"pos": p} for i, p in zip((selection[positions] - shard.offset).tolist(),
                                                           positions.tolist())]
            table = pa.Table.from_pylist(picked, schema=PIECE_SCHEMA)
            write_table_atomic(plan.dir / "pieces" / name / f"{shard.id}.parquet", table, row_group_size=256)
        write_text(marker, "")


MERGE_FAN_IN = 16  # pieces open at once in the final merge: each holds a decoded row group


def rows_by_position(pieces: list[Path]) -> Iterator[dict]:
    """Rows of position-sorted pieces, merged into one position order (a row group per piece held)."""
    def rows(path: Path) -> Iterator[dict]:
        for batch in iter_batches(path, 256):
            yield from batch

    return heapq.merge(*(rows(p) for p in pieces), key=lambda r: r["pos"])


def write_rows(writer: ChunkedParquetWriter, rows: Iterator[dict], chunk_rows: int = 1024) -> ChunkedParquetWriter:
    chunk = []
    for row in rows:
        chunk.append(row)
        if len(chunk) >= chunk_rows:
            writer.write(chunk)
            chunk = []
    writer.write(chunk)
    return writer


def merged_rows(pieces: list[Path], scratch: Path) -> Iterator[dict]:
    """The rows of all pieces in position order, without their positions, at most MERGE_FAN_IN pieces open at a
    time. A corpus has a piece per shard, so one flat merge would hold a row group of every shard at once (its
    memory grows with the corpus: docs/log.md, 2026-12-01); instead pieces are first merged
    MERGE_FAN_IN at a time into sorted runs under `scratch`, then the runs, until few enough remain."""
    level = 0
    while len(pieces) > MERGE_FAN_IN:
        runs = []
        for start in range(0, len(pieces), MERGE_FAN_IN):
            writer = ChunkedParquetWriter(scratch / f"run{level}_{start // MERGE_FAN_IN:05d}.parquet", PIECE_SCHEMA)
            runs.append(write_rows(writer, rows_by_position(pieces[start:start + MERGE_FAN_IN])).close())
        pieces, level = runs, level + 1
    for row in rows_by_position(pieces):
        row.pop("pos")
        yield row


def write(plan: Plan, rank: int, world_size: int) -> None:
    """<group>/{train,dev}.parquet in chunks, and quality_scores.json streamed from the shards' scores."""
    out = Path(plan.out_dir)
    for name in outputs(plan):
        group, split = name.rsplit(".", 1)
        scratch = plan.dir / "merge" / name
        writer = write_rows(ChunkedParquetWriter(out / group / f"{split}.parquet"),
                            merged_rows(sorted((plan.dir / "pieces" / name).glob("*.parquet")), scratch))
        if writer.rows == 0:
            writer.writer.write_table(SCHEMA.empty_table())
        writer.close()
        shutil.rmtree(scratch, ignore_errors=True)
    write_scores(plan, out / "quality_scores.json")


def write_scores(plan: Plan, path: Path) -> None:
    """{id: score} as write_json would format it, written shard by shard."""
    import os
    import tempfile

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    first = True
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("{")
        if plan.quality_enabled(filter_result(plan)["candidates"]):
            for shard in all_shards(plan):
                scores = json.loads((plan.dir / "score" / f"{shard.id}.json").read_text(encoding="utf-8"))["scores"]
                for i, value in scores:
                    f.write(("\n" if first else ",\n") + f"  {json.dumps(i, ensure_ascii=False)}: {json.dumps(value)}")
                    first = False
        f.write("}\n" if first else "\n}\n")
    os.replace(tmp, path)


STEPS: dict[str, Callable[[Plan, int, int], None]] = {
    "convert": convert, "keys": keys, "filter": filter_pass, "judge": judge, "classifier": classifier,
    "score": score, "mixture": mixture, "gather": gather, "write": write,
}


def task_counts(plan: Plan) -> dict[str, int]:
    """How many tasks each step runs: per-shard steps use curate.tasks, ordered passes one."""
    tasks = plan.config.tasks
    return {"convert": min(tasks, len(plan.used_sources) + 1), "keys": tasks, "filter": 1, "judge": 1,
            "classifier": 1, "score": tasks, "mixture": 1, "gather": tasks, "write": 1}


@dataclass
class StepTask:
    """A datatrove pipeline callable: runs one step for the executor's rank (no documents flow through)."""

    step: str
    plan: Plan

    def __call__(self, data, rank: int = 0, world_size: int = 1):
        STEPS[self.step](self.plan, rank, world_size)
        return None

    def __repr__(self) -> str:  # datatrove logs the pipeline: name the step, not the whole recipe
        return f"findap curate step '{self.step}' ({self.plan.work})"

    def __setstate__(self, state: dict) -> None:
        # Unpickled in a Ray or Slurm worker before it forks a process per task: importing the step's libraries
        # here lets every forked task inherit them instead of importing them again (seconds per task).
        self.__dict__.update(state)
        for module in WARM_IMPORTS.get(self.step, ()):
            __import__(module)


WARM_IMPORTS = {
    "convert": ("findap.curate.sources",),
    "keys": ("findap.curate.dedup", "findap.curate.decontam"),
    "judge": ("findap.curate.judge_filter",),
    "classifier": ("findap.curate.classifier",),
    "score": ("findap.curate.tokens", "findap.curate.mixture", "transformers"),
    "mixture": ("findap.curate.mixture",),
}
