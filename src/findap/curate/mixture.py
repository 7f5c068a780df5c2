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

import numpy as np

from findap.curate.config import LabelBalanceConfig, MixtureConfig


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


def unmet_shares(pool: "MixPool", positions: np.ndarray, cfg: MixtureConfig) -> list[str]:
    """unmet_share for the IT and CPT examples at `positions` (a group mixed anew), as manifest warnings."""
    out = []
    for kind in ("it", "cpt"):
        finance, general = pool.split(positions, kind)
        f, g = pool.total(finance), pool.total(general)
        problem = unmet_share(kind, f, g, natural_share(f, g, getattr(cfg, f"{kind}_domain_share")),
                              "example of the group")
        if problem:
            out.append(problem)
    return out


def unmet_share(kind: str, domain_tokens: int, general_tokens: int, share: float, among: str) -> str | None:
    """Why a kind that a group has examples of gets none: its finance share asks for a side the group has none of,
    so `_largest_total` is 0. The recipe check (CurateConfig) asks this of the sources' declared domains (one
    token per side present), the curation of the data (a side whose sources yielded no examples); `among` names
    what is counted ("source of group g")."""
    if domain_tokens + general_tokens == 0 or _largest_total(domain_tokens, general_tokens, share) > 0:
        return None
    has, lacks = ("finance", "general") if domain_tokens else ("general", "finance")
    return (f"curate.mixture.{kind}_domain_share is {share:g}, but every {kind.upper()} {among} is {has}, so the "
            f"group would get no {kind.upper()} examples; set it to {1 if has == 'finance' else 0} (or null: the "
            f"sources' own share), or add a {lacks} {kind.upper()} source to the group")


def summarise_rows(rows) -> dict:
    """(source, kind, domain, capability, tokens) rows -> documents and tokens per source; kind, domain and
    capability token shares."""
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


# ---- label balancing (curate.balance_labels) -----------------------------------------------------------------
# Classification sources record each example's label, and label balancing repeats labelled examples (`<id>~k`,
# made by the converter step so that they pass the filters beside their original). Per source, over what
# survived the filters: minority labels grow through their copies towards the largest label's count of originals,
# then every label is cut to the largest count C with C <= share x the source's total (share: max_label_share, at
# least 1/k; the fair share 1/k makes all labels equal). Within a label originals come before copies, each in the
# mixture's seeded order, so the result is deterministic given the seed and keeps whole originals first. The cap
# is applied again to each group's training split, after the token budget and the dev split have taken their
# seeded samples.

def effective_share(cfg: LabelBalanceConfig, labels: int) -> float | None:
    """The cap used for a source with `labels` labels: None means the fair share 1/labels."""
    share = cfg.max_label_share
    return None if share is None or share * labels <= 1 + 1e-12 else share


def label_quota(originals: dict, available: dict, share: float | None) -> dict:
    """{label: how many examples to keep}; `available` counts originals plus their usable copies."""
    if len(originals) <= 1:
        return dict(originals)  # nothing to balance against: no copies
    ceiling = max(originals.values())
    grown = {label: min(available[label], max(ceiling, originals[label])) for label in originals}
    if share is None:
        cap = min(grown.values())
    else:  # largest integer cap C with C <= share * sum(min(g, C)): the feasible caps are an interval from 0
        low, high = 0, max(grown.values())
        while low < high:
            mid = (low + high + 1) // 2
            if mid <= share * sum(min(g, mid) for g in grown.values()) + 1e-9:
                low = mid
            else:
                high = mid - 1
        cap = low
    return {label: min(g, cap) for label, g in grown.items()}


def label_counts(rows, sources: set[str]) -> dict[str, dict]:
    """(source, label, copy number) rows -> {source: {"labels": {label: examples}, "copies": n}}."""
    out: dict[str, dict] = {}
    for source, label, copy in rows:
        if source not in sources or label is None:
            continue
        entry = out.setdefault(source, {"labels": {}, "copies": 0})
        entry["labels"][label] = entry["labels"].get(label, 0) + 1
        entry["copies"] += bool(copy)
    return out


def label_report(pool_rows, train_rows, dev_rows, sources: set[str], cfg: LabelBalanceConfig) -> dict[str, dict]:
    """The manifest's per-group label counts of each balanced source: `before` (the originals that survived the
    filters), `train` and `dev` (what the group holds, copies included, `train_copies` of them copies), and the
    cap applied."""
    before = label_counts(((s, label, 0) for s, label, copy in pool_rows if not copy), sources)
    train, dev = label_counts(train_rows, sources), label_counts(dev_rows, sources)
    out = {}
    for source in sorted(before):
        labels = before[source]["labels"]
        share = effective_share(cfg, len(labels))
        out[source] = {
            "before": dict(sorted(labels.items())),
            "train": dict(sorted(train.get(source, {"labels": {}})["labels"].items())),
            "dev": dict(sorted(dev.get(source, {"labels": {}})["labels"].items())),
            "train_copies": train.get(source, {"copies": 0})["copies"],
            "max_label_share": round(share if share is not None else 1 / len(labels), 4),
        }
    return out


# ---- the selection over columns (numpy): no texts, no ids ------------------------------------------------------
def rank_key(seed: int, example_id: str) -> tuple[int, int]:
    """The first 128 bits of sha256(seed, id), the seeded order's sort key, as two integers (big-endian: the
    same order as the hex digest)."""
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


def take_tokens_columns(pool: MixPool, positions: np.ndarray, target: float,
                        last: np.ndarray | None = None) -> np.ndarray:
    """Examples in the seeded order (key "mix") whose token counts add up to at most `target`, skipping ones that
    overflow it; the examples whose original's key (`dev_hi`, shared by its copies) is in `last` come after all
    others, in the same order."""
    ordered = pool.seeded(positions, "mix")
    if last is not None:
        ordered = ordered[np.argsort(np.isin(pool.c["dev_hi"][ordered], last), kind="stable")]
    chosen, total = [], 0
    for position, n in zip(ordered.tolist(), pool.c["tokens"][ordered].tolist()):
        if total + n <= target + 1e-6:
            chosen.append(position)
            total += n
    return np.asarray(chosen, dtype=np.int64)


def build_mixture_columns(pool: MixPool, positions: np.ndarray, cfg: MixtureConfig,
                          last: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
    """Select a group's examples from `positions`: returns (chosen pool positions in output order, the targets
    and shortfalls report). `last`: the keys of examples to draw after all others
    (take_tokens_columns)."""
    it_fin, it_gen = pool.split(positions, "it")
    cpt_fin, cpt_gen = pool.split(positions, "cpt")
    it_share = natural_share(pool.total(it_fin), pool.total(it_gen), cfg.it_domain_share)
    t_it = _largest_total(pool.total(it_fin), pool.total(it_gen), it_share)
    if cfg.max_it_tokens is not None:
        t_it = min(t_it, cfg.max_it_tokens)
    it = np.concatenate([take_tokens_columns(pool, it_fin, it_share * t_it, last),
                         take_tokens_columns(pool, it_gen, (1 - it_share) * t_it, last)])
    it_tokens = pool.total(it)
    cpt_share = natural_share(pool.total(cpt_fin), pool.total(cpt_gen), cfg.cpt_domain_share)
    t_cpt = _largest_total(pool.total(cpt_fin), pool.total(cpt_gen), cpt_share)
    if cfg.subsample_cpt_to_it:
        t_cpt = min(t_cpt, it_tokens * cfg.cpt_share / (1 - cfg.cpt_share))
    targets = {"it_tokens": t_it, "cpt_tokens": t_cpt,
               "cpt_finance": cpt_share * t_cpt, "cpt_general": (1 - cpt_share) * t_cpt}
    got_finance = take_tokens_columns(pool, cpt_fin, targets["cpt_finance"], last)
    got_general = take_tokens_columns(pool, cpt_gen, targets["cpt_general"], last)
    shortfall = {"cpt_finance": max(0, round(targets["cpt_finance"] - pool.total(got_finance))),
                 "cpt_general": max(0, round(targets["cpt_general"] - pool.total(got_general)))}
    chosen = np.concatenate([got_finance, got_general, it]).astype(np.int64)
    return chosen, {"targets": {k: round(v) for k, v in targets.items()}, "shortfall": shortfall}


def mixture_stats_columns(pool: MixPool, positions: np.ndarray) -> dict:
    """Documents and tokens per source; kind, domain and capability token shares (summarise_rows)."""
    names = pool.names
    columns = [pool.c[name][positions].tolist() for name in ("source", "kind", "domain", "capability", "tokens")]
    return summarise_rows((names["source"][source], names["kind"][kind], names["domain"][domain],
                           names["capability"][capability], n) for source, kind, domain, capability, n in zip(*columns))


def dev_split_columns(pool: MixPool, chosen: np.ndarray, cfg: MixtureConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train, dev): a seeded slice (key "dev" = the seed + 1 order) held out for the trainer's development loss,
    both in chosen order. Copies made for label balancing go where their original goes, so no dev example is ever
    trained on under another id."""
    if not len(chosen) or cfg.dev_fraction == 0:
        return chosen, chosen[:0]
    ordered = pool.seeded(chosen, "dev")
    copies = pool.c.get("copy")
    if copies is not None and copies[chosen].any():
        # an original and its copies are one unit (they carry the original's dev key: a run of equal keys), and
        # the slice is `dev_fraction` of the units
        hi, lo = pool.c["dev_hi"][ordered], pool.c["dev_lo"][ordered]
        starts = np.ones(len(ordered), dtype=bool)
        starts[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
        unit = np.cumsum(starts) - 1
        n_units = int(unit[-1]) + 1
        n_dev = min(n_units - 1, max(cfg.dev_min, round(cfg.dev_fraction * n_units)))
        in_dev = np.isin(chosen, ordered[unit < n_dev])
        return chosen[~in_dev], chosen[in_dev]
    n_dev = min(len(ordered) - 1, max(cfg.dev_min, round(cfg.dev_fraction * len(ordered))))
    in_dev = np.isin(chosen, ordered[:n_dev])
    return chosen[~in_dev], chosen[in_dev]


def _keep_quota_columns(pool: MixPool, positions: np.ndarray, sources: set[str], cfg: LabelBalanceConfig,
                        grow: bool) -> np.ndarray:
    """The positions kept by the label quota, in their order (grow: copies count, and a copy only beside its
    original)."""
    if not sources or not len(positions) or "label" not in pool.c:
        return positions
    labelled = np.asarray([name is not None for name in pool.names["label"]], dtype=bool)
    source_codes = pool.c["source"][positions]
    label_codes = pool.c["label"][positions]
    copies = pool.c["copy"][positions]
    keep = np.ones(len(positions), dtype=bool)
    for code, name in enumerate(pool.names["source"]):
        if name not in sources:
            continue
        rows = np.nonzero((source_codes == code) & labelled[label_codes])[0]
        if not len(rows):
            continue
        if grow:  # a copy counts only beside its original: same dev key (both hash the original's id)
            at = positions[rows]
            keys = pool.c["dev_hi"][at].astype(object) * (1 << 64) + pool.c["dev_lo"][at].astype(object)
            present = set(keys[copies[rows] == 0].tolist())
            orphan = (copies[rows] != 0) & ~np.asarray([k in present for k in keys.tolist()], dtype=bool)
            keep[rows[orphan]] = False
            rows = rows[~orphan]
        by_label = {int(c): rows[label_codes[rows] == c] for c in np.unique(label_codes[rows]).tolist()}
        originals = {c: int((copies[r] == 0).sum()) if grow else len(r) for c, r in by_label.items()}
        quota = label_quota(originals, {c: len(r) for c, r in by_label.items()}, effective_share(cfg, len(by_label)))
        for c, r in by_label.items():
            at = positions[r]
            ordered = r[np.lexsort((pool.c["mix_lo"][at], pool.c["mix_hi"][at], copies[r]))]
            keep[ordered[quota[c]:]] = False
    return positions[keep]


def balance_labels_columns(pool: MixPool, positions: np.ndarray, sources: set[str],
                           cfg: LabelBalanceConfig) -> np.ndarray:
    """The pool with the balanced sources' labels brought within the cap (copies added, majority cut), in pool
    order; other sources untouched."""
    return _keep_quota_columns(pool, positions, sources, cfg, grow=True)


def cap_labels_columns(pool: MixPool, positions: np.ndarray, sources: set[str], cfg: LabelBalanceConfig) -> np.ndarray:
    """A training split with every balanced source's labels cut to the cap again (no copies added)."""
    return _keep_quota_columns(pool, positions, sources, cfg, grow=False)


def label_rows_columns(pool: MixPool, positions: np.ndarray):
    """(source, label, copy number) of each position, as label_report counts them."""
    if "label" not in pool.c:
        return iter(())
    sources, labels = pool.value("source", positions), pool.value("label", positions)
    return zip(sources, labels, pool.c["copy"][positions].tolist())
