"""Token-share mixtures (paper Table 5): IT domain/general, CPT domain/general, CPT subsampled to IT size.

    IT:  the largest set with finance share s_it:  T_it = min(F_it / s_it, G_it / (1 - s_it))
    CPT: T_cpt = min(T_it * cpt_share / (1 - cpt_share),     (CPT:IT = 50:50 -> T_cpt = T_it)
                     F_cpt / s_cpt, G_cpt / (1 - s_cpt))      (never break the domain share)
         finance s_cpt * T_cpt, general (1 - s_cpt) * T_cpt. When CPT is too small for the CPT:IT ratio the
         manifest warns (the paper's corpora always have more CPT than IT, so subsampling only ever shrinks).

"domain" here means finance vs everything else (general and math are the general half, as in the paper).
Within a side, examples are taken in a seeded hash order while they fit the token target, so the result is
deterministic given the seed and independent of input order.
"""
from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from typing import Sequence

import numpy as np

from findap.curate.config import MixtureConfig


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


def natural_share(domain_tokens: int, general_tokens: int, share: float | None) -> float:
    """The configured share, or (None) the pool's own finance share: keep everything, rebalance nothing."""
    if share is not None:
        return share
    total = domain_tokens + general_tokens
    return domain_tokens / total if total else 0.5


def _largest_total(domain_tokens: int, general_tokens: int, share: float) -> float:
    """Largest total with `share` of it in-domain, given what each side has."""
    by_domain = domain_tokens / share if share > 0 else math.inf
    by_general = general_tokens / (1 - share) if share < 1 else math.inf
    return min(by_domain, by_general)


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


def summarise_rows(rows) -> dict:
    """(source, kind, domain, capability, tokens) rows -> mixture_stats' summary; the list and column paths share it."""
    per_source: dict[str, dict] = defaultdict(lambda: {"docs": 0, "tokens": 0})
    kind_tokens: dict[str, int] = defaultdict(int)
    domain_tokens: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    capability_tokens: dict[str, int] = defaultdict(int)
    docs = 0
    for source, kind, domain, capability, n in rows:
        docs += 1
        entry = per_source[source]
        entry["docs"] += 1
        entry["tokens"] += n
        entry.update(kind=kind, domain=domain, capability=capability)
        kind_tokens[kind] += n
        domain_tokens[kind]["finance" if domain == "finance" else "general"] += n
        capability_tokens[capability] += n
    total = sum(kind_tokens.values()) or 1

    def shares(counts: dict[str, int]) -> dict[str, float]:
        s = sum(counts.values()) or 1
        return {k: round(v / s, 4) for k, v in sorted(counts.items())}

    return {
        "docs": docs,
        "tokens": sum(kind_tokens.values()),
        "tokens_by_kind": dict(kind_tokens),
        "kind_shares": {k: round(v / total, 4) for k, v in sorted(kind_tokens.items())},
        "domain_shares": {kind: shares(d) for kind, d in sorted(domain_tokens.items())},
        "capability_shares": shares(capability_tokens),
        "sources": {k: dict(v) for k, v in sorted(per_source.items())},
    }


def share_warnings(stats: dict, cfg: MixtureConfig) -> list[str]:
    """Shares that missed the recipe by more than cfg.tolerance (e.g. a side ran out of data)."""
    wanted = {("it", "finance"): cfg.it_domain_share, ("cpt", "finance"): cfg.cpt_domain_share}
    warnings = []
    for (kind, domain), share in wanted.items():
        got = stats["domain_shares"].get(kind, {}).get(domain, 0.0)
        if share is not None and kind in stats["tokens_by_kind"] and abs(got - share) > cfg.tolerance:
            warnings.append(f"{kind} {domain} share {got:.3f} vs recipe {share:.3f}")
    if cfg.subsample_cpt_to_it and "cpt" in stats["kind_shares"]:
        got = stats["kind_shares"]["cpt"]
        if abs(got - cfg.cpt_share) > cfg.tolerance:
            warnings.append(f"cpt token share {got:.3f} vs recipe {cfg.cpt_share:.3f}")
    return warnings


def dev_split(examples: Sequence[dict], cfg: MixtureConfig, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, dev): a seeded slice held out for the trainer's development loss."""
    if not examples or cfg.dev_fraction == 0:
        return list(examples), []
    ordered = seeded_order(examples, seed + 1)
    n_dev = min(len(ordered) - 1, max(cfg.dev_min, round(cfg.dev_fraction * len(ordered))))
    dev_ids = {ex["id"] for ex in ordered[:n_dev]}
    return [ex for ex in examples if ex["id"] not in dev_ids], [ex for ex in examples if ex["id"] in dev_ids]


# ---- the streamed form: the same selection over columns (numpy) instead of example dicts --------------------
def rank_key(seed: int, example_id: str) -> tuple[int, int]:
    """The first 128 bits of seeded_order's sort key, as two integers (big-endian: same order as the hex)."""
    digest = hashlib.sha256(f"{seed}\x00{example_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big"), int.from_bytes(digest[8:16], "big")


class MixPool:
    """What the mixture needs of every surviving example, as columns in stream order (no texts, no ids):
    `row` (global row number), codes of source/kind/domain/capability, tokens, and two seeded rank keys."""

    def __init__(self, columns: dict[str, np.ndarray], names: dict[str, list[str]]):
        self.c, self.names = columns, names

    def value(self, column: str, positions: np.ndarray) -> list[str]:
        table = self.names[column]
        return [table[code] for code in self.c[column][positions].tolist()]

    def seeded(self, positions: np.ndarray, key: str) -> np.ndarray:
        hi, lo = self.c[f"{key}_hi"][positions], self.c[f"{key}_lo"][positions]
        return positions[np.lexsort((lo, hi))]  # primary hi, then lo; stable like sorted()

    def total(self, positions: np.ndarray) -> int:
        return int(self.c["tokens"][positions].sum())

    def split(self, positions: np.ndarray, kind: str) -> tuple[np.ndarray, np.ndarray]:
        of_kind = positions[self.c["kind"][positions] == self.names["kind"].index(kind)] \
            if kind in self.names["kind"] else positions[:0]
        finance = self.names["domain"].index("finance") if "finance" in self.names["domain"] else -1
        in_domain = self.c["domain"][of_kind] == finance
        return of_kind[in_domain], of_kind[~in_domain]


def take_tokens_columns(pool: MixPool, positions: np.ndarray, target: float) -> np.ndarray:
    """take_tokens over columns: seeded order (key "mix"), skipping examples that overflow the target."""
    ordered = pool.seeded(positions, "mix")
    chosen, total = [], 0
    for position, n in zip(ordered.tolist(), pool.c["tokens"][ordered].tolist()):
        if total + n <= target + 1e-6:
            chosen.append(position)
            total += n
    return np.asarray(chosen, dtype=np.int64)


def build_mixture_columns(pool: MixPool, positions: np.ndarray, cfg: MixtureConfig) -> tuple[np.ndarray, dict]:
    """build_mixture over columns; returns (chosen pool positions in output order, plan)."""
    it_fin, it_gen = pool.split(positions, "it")
    cpt_fin, cpt_gen = pool.split(positions, "cpt")
    it_share = natural_share(pool.total(it_fin), pool.total(it_gen), cfg.it_domain_share)
    t_it = _largest_total(pool.total(it_fin), pool.total(it_gen), it_share)
    if cfg.max_it_tokens is not None:
        t_it = min(t_it, cfg.max_it_tokens)
    it = np.concatenate([take_tokens_columns(pool, it_fin, it_share * t_it),
                         take_tokens_columns(pool, it_gen, (1 - it_share) * t_it)])
    it_tokens = pool.total(it)
    cpt_share = natural_share(pool.total(cpt_fin), pool.total(cpt_gen), cfg.cpt_domain_share)
    t_cpt = _largest_total(pool.total(cpt_fin), pool.total(cpt_gen), cpt_share)
    if cfg.subsample_cpt_to_it:
        t_cpt = min(t_cpt, it_tokens * cfg.cpt_share / (1 - cfg.cpt_share))
    targets = {"it_tokens": t_it, "cpt_tokens": t_cpt,
               "cpt_finance": cpt_share * t_cpt, "cpt_general": (1 - cpt_share) * t_cpt}
    got_finance = take_tokens_columns(pool, cpt_fin, targets["cpt_finance"])
    got_general = take_tokens_columns(pool, cpt_gen, targets["cpt_general"])
    shortfall = {"cpt_finance": max(0, round(targets["cpt_finance"] - pool.total(got_finance))),
                 "cpt_general": max(0, round(targets["cpt_general"] - pool.total(got_general)))}
    chosen = np.concatenate([got_finance, got_general, it]).astype(np.int64)
    return chosen, {"targets": {k: round(v) for k, v in targets.items()}, "shortfall": shortfall}


def mixture_stats_columns(pool: MixPool, positions: np.ndarray) -> dict:
    """mixture_stats over columns (same numbers and key order)."""
    names = pool.names
    columns = [pool.c[name][positions].tolist() for name in ("source", "kind", "domain", "capability", "tokens")]
    return summarise_rows((names["source"][source], names["kind"][kind], names["domain"][domain],
                           names["capability"][capability], n) for source, kind, domain, capability, n in zip(*columns))


def dev_split_columns(pool: MixPool, chosen: np.ndarray, cfg: MixtureConfig) -> tuple[np.ndarray, np.ndarray]:
    """dev_split over columns (key "dev" = the seed + 1 order): (train, dev) positions, both in chosen order."""
    if not len(chosen) or cfg.dev_fraction == 0:
        return chosen, chosen[:0]
    ordered = pool.seeded(chosen, "dev")
    n_dev = min(len(ordered) - 1, max(cfg.dev_min, round(cfg.dev_fraction * len(ordered))))
    in_dev = np.isin(chosen, ordered[:n_dev])
    return chosen[~in_dev], chosen[in_dev]
