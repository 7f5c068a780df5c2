"""The mixture step: each group's selection, made from the survivors' columns (work/score), never their texts.

This block's job is not per document: it reads the score step's columns of every survivor (~60 bytes a
document) into one MixPool and writes, per group and split, the chosen global row keys in output order
(work/selection/<group>.<split>.npy) and the groups' statistics (work/mixture.json).
"""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from findap.curate.blocks.documents import META_COLUMNS, PlanWork
from findap.curate.plan import Plan
from findap.io import write_json

TEXT_COLUMNS = ("kind", "domain", "source", "capability", "label")


def load_pool(plan: Plan):
    """The survivors' columns, in the global order, with the text columns as small integer codes."""
    from findap.curate.mixture import MixPool

    names: dict[str, list[str]] = {c: [] for c in TEXT_COLUMNS}
    codes: dict[str, dict[str, int]] = {c: {} for c in names}
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    for path in sorted((plan.dir / "score").glob("*/*.parquet")):
        table = pq.read_table(path)
        for column in META_COLUMNS:
            values = table.column(column)
            if column in names:
                lookup = codes[column]
                for value in values.unique().to_pylist():
                    if value not in lookup:
                        lookup[value] = len(names[column])
                        names[column].append(value)
                parts[column].append(np.asarray([lookup[v] for v in values.to_pylist()], dtype=np.int32))
            else:
                parts[column].append(values.to_numpy())
    dtypes = {"row": np.int64, "tokens": np.int64, "label": np.int32, "copy": np.int32}
    columns = {c: np.concatenate(parts[c]) if parts[c] else np.zeros(0, dtype=dtypes.get(c, np.uint64))
               for c in META_COLUMNS}
    return MixPool(columns, names)


class GroupMixtures(PlanWork):
    """Each group's selection: the label balance, the token-share mixture, the dev split and the label cap; a group
    that extends another keeps its parent's split and adds its own sources' examples on top."""

    name = "findap group mixtures"
    warm_imports = ("findap.curate.mixture",)

    def work(self, rank: int, world_size: int) -> None:
        from findap.curate.mixture import (
            balance_labels_columns, build_mixture_columns, cap_labels_columns, dev_split_columns, label_report,
            label_rows_columns, mixture_stats_columns, share_warnings, unmet_shares,
        )

        cfg, plan = self.plan.config, self.plan
        pool = load_pool(plan)
        balanced, balance = cfg.balanced_sources(), cfg.balance_labels
        source_of = np.asarray(pool.names["source"], dtype=object)
        out, chosen_by_group, split_by_group = {}, {}, {}
        everything = np.arange(len(pool.c["row"]), dtype=np.int64)
        for group in cfg.groups:
            names = set(cfg.group_sources(group.name))
            in_group = np.asarray([s in names for s in source_of], dtype=bool)
            positions = everything[in_group[pool.c["source"]]] if len(source_of) else everything
            unmet = []
            if group.extends:
                # group 2 = group 1's data + its own additions (paper Table 5): re-mixing the whole pool under group
                # 1's shares and caps would crowd the additions out again, so they are added on top
                extra = set(group.sources) - set(cfg.group_sources(group.extends))
                is_extra = np.asarray([s in extra for s in source_of], dtype=bool)
                added = positions[is_extra[pool.c["source"][positions]]] if len(source_of) else positions
                added = balance_labels_columns(pool, added, balanced, balance)
                plan_info = {"extends": group.extends, "added_docs": len(added)}
                # the parent's split stands (its dev documents were never trained on, its train documents were);
                # only the additions are split, by the same seeded rule
                parent_train, parent_dev = split_by_group[group.extends]
                added_train, added_dev = dev_split_columns(pool, added, cfg.mixture)
                capped = cap_labels_columns(pool, added_train, balanced, balance)
                added = added[~np.isin(added, np.setdiff1d(added_train, capped))]
                chosen = np.concatenate([chosen_by_group[group.extends], added])
                train, dev = np.concatenate([parent_train, capped]), np.concatenate([parent_dev, added_dev])
            else:
                mixture = cfg.mixture if group.max_it_tokens is None else \
                    cfg.mixture.model_copy(update={"max_it_tokens": group.max_it_tokens})
                # an example is known by its original's key, which its balancing copies share
                trained = np.unique(pool.c["dev_hi"][np.concatenate([t for t, _ in split_by_group.values()])]) \
                    if group.unseen_first and split_by_group else None
                mixable = balance_labels_columns(pool, positions, balanced, balance)
                unmet = unmet_shares(pool, mixable, mixture)
                chosen, plan_info = build_mixture_columns(pool, mixable, mixture, last=trained)
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
                               "warnings": unmet + share_warnings(stats, cfg.mixture)}
            if balanced & names:
                out[group.name]["labels"] = label_report(
                    label_rows_columns(pool, positions), label_rows_columns(pool, train),
                    label_rows_columns(pool, dev), balanced & names, balance)
        write_json(plan.dir / "mixture.json", out)


def save_rows(path: Path, rows: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    np.save(tmp, rows.astype(np.int64), allow_pickle=False)
    tmp.replace(path)
