"""The curation's decisions as plain functions over lists of examples: the reference the tests hold the product
path (datatrove blocks over shards, findap.curate.steps) to on small inputs.

    dedup            exact_dedup (all kinds, by prompt) then near_dedup (datasketch MinHashLSH over CPT)
    decontaminate    EvalIndex.match over every example
    min_length       the min-words filter
    pick_sample      the judge's seeded sample
    build_mixture, dev_split, balance_labels, cap_labels, mixture_stats   the group mixture
    write_groups     every group's train/dev files and statistics, as the product path's mixture step makes them
    survivors        what a finished curation's score step kept (rows and token counts), in the global order

Each makes the same decisions, in the same order, as its streamed counterpart; the tests compare them.
"""
from __future__ import annotations

import hashlib
import logging
from collections import Counter, defaultdict
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pyarrow.parquet as pq
from datasketch import MinHash, MinHashLSH

from findap.curate.config import CurateConfig, DedupConfig, LabelBalanceConfig, MixtureConfig
from findap.curate.decontam import EvalIndex, EvalItem
from findap.curate.dedup import DedupReport, shingles
from findap.curate.mixture import (
    _largest_total, effective_share, label_quota, label_report, natural_share, share_warnings, summarise_rows,
)
from findap.curate.records import base_id, copy_number, example_text, normalize, prompt_text
from findap.curate.shards import CONTRACT_FIELDS
from findap.io import write_parquet

log = logging.getLogger(__name__)


# ---- dedup -------------------------------------------------------------------------------------------------
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


# ---- decontamination, min length, judge sample -----------------------------------------------------------
def decontaminate(
    examples: list[dict],
    eval_texts: Mapping[str, Iterable[EvalItem]] | Iterable[EvalItem] | EvalIndex,
    n: int = 13,
    short_words: int = 8,
    min_overlap: float = 0.5,
) -> tuple[list[dict], dict[str, dict[str, int]]]:
    """Keep examples that contain no evaluation probe (`eval_texts`: plain texts or items, or {task: those}).

    Returns (kept, removed) with removed = {task: {source: count}}.
    """
    index = eval_texts if isinstance(eval_texts, EvalIndex) else EvalIndex(eval_texts, n, short_words, min_overlap)
    removed: dict[str, Counter] = defaultdict(Counter)
    kept = []
    for ex in examples:
        task = index.match(example_text(ex))
        if task is None:
            kept.append(ex)
        else:
            removed[task][ex["source"]] += 1
    return kept, {task: dict(counts) for task, counts in removed.items()}


def min_length(examples: list[dict], min_words: int) -> tuple[list[dict], dict[str, int]]:
    kept, dropped = [], {}
    for ex in examples:
        if ex["kind"] == "cpt" and len(ex["text"].split()) < min_words:
            dropped[ex["source"]] = dropped.get(ex["source"], 0) + 1
        else:
            kept.append(ex)
    return kept, dropped


def pick_sample(examples: Sequence[dict], size: int, seed: int) -> list[dict]:
    """`size` examples chosen by a seeded hash of their id: stable under reordering and resume."""
    def rank(ex: dict) -> str:
        return hashlib.sha256(f"{seed}\x00{ex['id']}".encode()).hexdigest()

    return sorted(examples, key=rank)[:size]


def contract_row(example: dict) -> dict:
    return {k: example.get(k) for k in CONTRACT_FIELDS}


# ---- mixture ----------------------------------------------------------------------------------------------
def seeded_order(examples: Sequence[dict], seed: int) -> list[dict]:
    return sorted(examples, key=lambda ex: hashlib.sha256(f"{seed}\x00{ex['id']}".encode()).hexdigest())


def take_tokens(examples: Sequence[dict], tokens: dict[str, int], target: float, seed: int) -> list[dict]:
    """Examples (seeded order) whose token counts add up to at most `target`, skipping ones that overflow."""
    chosen, total = [], 0
    for ex in seeded_order(examples, seed):
        n = tokens[ex["id"]]
        if total + n <= target + 1e-6:  # float shares (e.g. 0.9 * 100) must not drop an exact fit
            chosen.append(ex)
            total += n
    return chosen


def _total(examples: Sequence[dict], tokens: dict[str, int]) -> int:
    return sum(tokens[ex["id"]] for ex in examples)


def _split(examples: Sequence[dict], kind: str) -> tuple[list[dict], list[dict]]:
    of_kind = [ex for ex in examples if ex["kind"] == kind]
    return [ex for ex in of_kind if ex["domain"] == "finance"], [ex for ex in of_kind if ex["domain"] != "finance"]


def build_mixture(
    pool: Sequence[dict], tokens: dict[str, int], cfg: MixtureConfig, seed: int
) -> tuple[list[dict], dict]:
    """Select the group's examples from `pool`. Returns (examples, targets/shortfalls report)."""
    it_fin, it_gen = _split(pool, "it")
    cpt_fin, cpt_gen = _split(pool, "cpt")
    it_share = natural_share(_total(it_fin, tokens), _total(it_gen, tokens), cfg.it_domain_share)
    t_it = _largest_total(_total(it_fin, tokens), _total(it_gen, tokens), it_share)
    if cfg.max_it_tokens is not None:
        t_it = min(t_it, cfg.max_it_tokens)
    it = take_tokens(it_fin, tokens, it_share * t_it, seed) + take_tokens(
        it_gen, tokens, (1 - it_share) * t_it, seed)
    it_tokens = _total(it, tokens)
    cpt_share = natural_share(_total(cpt_fin, tokens), _total(cpt_gen, tokens), cfg.cpt_domain_share)
    t_cpt = _largest_total(_total(cpt_fin, tokens), _total(cpt_gen, tokens), cpt_share)
    if cfg.subsample_cpt_to_it:  # the domain share wins over the CPT:IT ratio when CPT runs short (warned)
        t_cpt = min(t_cpt, it_tokens * cfg.cpt_share / (1 - cfg.cpt_share))
    targets = {"it_tokens": t_it, "cpt_tokens": t_cpt,
               "cpt_finance": cpt_share * t_cpt, "cpt_general": (1 - cpt_share) * t_cpt}
    cpt = take_tokens(cpt_fin, tokens, targets["cpt_finance"], seed) + take_tokens(
        cpt_gen, tokens, targets["cpt_general"], seed)
    got_finance = _total([e for e in cpt if e["domain"] == "finance"], tokens)
    got_general = _total([e for e in cpt if e["domain"] != "finance"], tokens)
    shortfall = {"cpt_finance": max(0, round(targets["cpt_finance"] - got_finance)),
                 "cpt_general": max(0, round(targets["cpt_general"] - got_general))}
    return cpt + it, {"targets": {k: round(v) for k, v in targets.items()}, "shortfall": shortfall}


def mixture_stats(examples: Sequence[dict], tokens: dict[str, int]) -> dict:
    """Documents and tokens per source; kind, domain and capability token shares."""
    return summarise_rows((ex["source"], ex["kind"], ex["domain"], ex["capability"], tokens[ex["id"]])
                          for ex in examples)


def dev_split(examples: Sequence[dict], cfg: MixtureConfig, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, dev): a seeded slice held out for the trainer's development loss. Copies made for label balancing
    go where their original goes, so no dev example is ever trained on under another id."""
    if not examples or cfg.dev_fraction == 0:
        return list(examples), []
    if any(copy_number(ex["id"]) for ex in examples):
        return _dev_split_units(examples, cfg, seed)
    ordered = seeded_order(examples, seed + 1)
    n_dev = min(len(ordered) - 1, max(cfg.dev_min, round(cfg.dev_fraction * len(ordered))))
    dev_ids = {ex["id"] for ex in ordered[:n_dev]}
    return [ex for ex in examples if ex["id"] not in dev_ids], [ex for ex in examples if ex["id"] in dev_ids]


def _dev_split_units(examples: Sequence[dict], cfg: MixtureConfig, seed: int) -> tuple[list[dict], list[dict]]:
    """dev_split with an original and its copies as one unit: the slice is `dev_fraction` of the units."""
    units = sorted({base_id(ex["id"]) for ex in examples},
                   key=lambda b: hashlib.sha256(f"{seed + 1}\x00{b}".encode()).hexdigest())
    n_dev = min(len(units) - 1, max(cfg.dev_min, round(cfg.dev_fraction * len(units))))
    dev_units = set(units[:n_dev])
    return ([ex for ex in examples if base_id(ex["id"]) not in dev_units],
            [ex for ex in examples if base_id(ex["id"]) in dev_units])


def _balance_order(examples: Sequence[dict], seed: int) -> list[dict]:
    return sorted(examples, key=lambda ex: (copy_number(ex["id"]),
                                            hashlib.sha256(f"{seed}\x00{ex['id']}".encode()).hexdigest()))


def _by_source_label(examples: Sequence[dict], sources: set[str]) -> dict[str, dict[str, list[dict]]]:
    out: dict[str, dict[str, list[dict]]] = defaultdict(lambda: defaultdict(list))
    for ex in examples:
        if ex["source"] in sources and ex.get("label") is not None:
            out[ex["source"]][ex["label"]].append(ex)
    return out


def _keep_quota(examples: Sequence[dict], sources: set[str], cfg: LabelBalanceConfig, seed: int,
                grow: bool) -> list[dict]:
    if not sources:
        return list(examples)
    dropped: set[int] = set()
    for by_label in _by_source_label(examples, sources).values():
        if grow:  # a copy counts only beside its original (the filters or the judge may have dropped that)
            present = {ex["id"] for rows in by_label.values() for ex in rows if not copy_number(ex["id"])}
            for rows in by_label.values():
                dropped.update(id(ex) for ex in rows if copy_number(ex["id"]) and base_id(ex["id"]) not in present)
            by_label = {label: kept for label, rows in by_label.items()
                        if (kept := [ex for ex in rows if id(ex) not in dropped])}
        originals = {label: sum(not copy_number(ex["id"]) for ex in rows) if grow else len(rows)
                     for label, rows in by_label.items()}
        quota = label_quota(originals, {label: len(rows) for label, rows in by_label.items()},
                            effective_share(cfg, len(by_label)))
        for label, rows in by_label.items():
            dropped.update(id(ex) for ex in _balance_order(rows, seed)[quota[label]:])
    return [ex for ex in examples if id(ex) not in dropped]


def balance_labels(pool: Sequence[dict], sources: set[str], cfg: LabelBalanceConfig, seed: int) -> list[dict]:
    """The pool with the balanced sources' labels brought within the cap (copies added, majority cut), in pool
    order; other sources untouched."""
    return _keep_quota(pool, sources, cfg, seed, grow=True)


def cap_labels(train: Sequence[dict], sources: set[str], cfg: LabelBalanceConfig, seed: int) -> list[dict]:
    """A training split with every balanced source's labels cut to the cap again (no copies added)."""
    return _keep_quota(train, sources, cfg, seed, grow=False)


def example_label_rows(examples: Sequence[dict]):
    return ((ex["source"], ex.get("label"), copy_number(ex["id"])) for ex in examples)


def write_groups(cfg: CurateConfig, examples: list[dict], tokens: dict[str, int], out_dir: Path,
                  seed: int) -> dict:
    out, chosen_by_group, split_by_group = {}, {}, {}
    balanced, balance = cfg.balanced_sources(), cfg.balance_labels
    for group in cfg.groups:
        names = set(cfg.group_sources(group.name))
        pool = [ex for ex in examples if ex["source"] in names]
        if group.extends:
            # paper: group 2 = group 1's data + its own additions (books, exercises). Re-mixing the whole pool
            # under group 1's shares and caps would crowd the additions out again, so they are added on top.
            added = [ex for ex in pool if ex["source"] in set(group.sources) - set(cfg.group_sources(group.extends))]
            added = balance_labels(added, balanced, balance, seed)
            plan = {"extends": group.extends, "added_docs": len(added)}
            # the parent's split stands (its dev documents were never trained on, its train documents were);
            # only the additions are split, by the same seeded rule
            parent_train, parent_dev = split_by_group[group.extends]
            added_train, added_dev = dev_split(added, cfg.mixture, seed)
            capped = cap_labels(added_train, balanced, balance, seed)
            cut = {id(ex) for ex in added_train} - {id(ex) for ex in capped}
            chosen = chosen_by_group[group.extends] + [ex for ex in added if id(ex) not in cut]
            train, dev = parent_train + capped, parent_dev + added_dev
        else:
            chosen, plan = build_mixture(balance_labels(pool, balanced, balance, seed), tokens, cfg.mixture, seed)
            train, dev = dev_split(chosen, cfg.mixture, seed)
            capped = cap_labels(train, balanced, balance, seed)
            cut = {id(ex) for ex in train} - {id(ex) for ex in capped}
            chosen, train = [ex for ex in chosen if id(ex) not in cut], capped
        chosen_by_group[group.name] = chosen
        split_by_group[group.name] = train, dev
        write_parquet(out_dir / group.name / "train.parquet", [contract_row(ex) for ex in train])
        write_parquet(out_dir / group.name / "dev.parquet", [contract_row(ex) for ex in dev])
        stats = mixture_stats(chosen, tokens)
        out[group.name] = {"sources": sorted(names), "pool_docs": len(pool), "plan": plan,
                           "train": mixture_stats(train, tokens), "dev_docs": len(dev), "all": stats,
                           "warnings": share_warnings(stats, cfg.mixture)}
        if balanced & names:
            out[group.name]["labels"] = label_report(example_label_rows(pool), example_label_rows(train),
                                                     example_label_rows(dev), balanced & names, balance)
        for warning in out[group.name]["warnings"]:
            log.warning("%s: %s", group.name, warning)
    return out


def survivors(cfg: CurateConfig, out: Path) -> tuple[list[dict], dict[str, int]]:
    """(rows, {id: tokens}) of what a finished curation's score step kept (work/score), in the global order: the
    input the mixture step chose from."""
    from findap.curate.plan import SOURCE_BITS

    (work,) = (Path(out) / "work").iterdir()
    rows, tokens = [], {}
    for path in sorted((work / "score").glob("*/*.parquet")):
        shard = path.relative_to(work / "score").with_suffix("").as_posix()
        first = int(shard.rsplit("/", 1)[1]) * cfg.shard_rows
        shard_rows = pq.read_table(work / "shards" / f"{shard}.parquet").to_pylist()
        kept = pq.read_table(path, columns=["row", "tokens"]).to_pydict()
        for row, n in zip(kept["row"], kept["tokens"]):
            rows.append(shard_rows[row % (1 << SOURCE_BITS) - first])
            tokens[rows[-1]["id"]] = n
    return rows, tokens


def excluded(out: Path, step: str) -> Counter:
    """{(source, reason): examples} of what a finished curation's `step` dropped (work/excluded/<step>/)."""
    (work,) = (Path(out) / "work").iterdir()
    rows = [r for p in sorted((work / "excluded" / step).glob("*.parquet"))
            for r in pq.read_table(p, columns=["source", "reason"]).to_pylist()]
    return Counter((r["source"], r["reason"]) for r in rows)


def as_manifest_counts(records: Counter, reason: str) -> dict[str, int]:
    """{source: examples} of the records with this reason."""
    return {source: n for (source, why), n in records.items() if why == reason}
