"""One cell's 95% interval and one task's paired difference between two models, in displayed units.

A cell's interval comes from its result's item statistics (Wilson for accuracy-like scores, a bootstrap over items
otherwise; findap.eval.uncertainty), else from the interval the result file stores. A difference is a paired
bootstrap over the items both models answered (matched by item id).
"""
from __future__ import annotations

import numpy as np

from findap.eval.metrics import ItemStats
from findap.eval.uncertainty import (
    N_BOOT, Interval, PairedDelta, align_items, delta_from_replicates, interval, paired_replicates, task_seed,
)
from findap.report.collect import TaskResult
from findap.report.layout import display_scale


def cell_interval(result: TaskResult, n_boot: int = N_BOOT, metric: str | None = None) -> Interval | None:
    """The 95% interval of the result's score `metric` (default: its headline) in displayed units: from the item
    statistics, else the file's stored one."""
    metric = metric or result.metric
    value = result.value if metric == result.metric else result.shown(metric)
    if value is None:
        return None
    scale = display_scale(metric)
    stats = result.stats_for(metric)
    if stats is not None:
        return interval(stats, metric, n_boot, task_seed(result.task, result.mode)).scaled(scale)
    stored = result.stored_interval if metric == result.metric else result.stored_intervals.get(metric)
    if stored and isinstance(stored.get("ci95"), list) and len(stored["ci95"]) == 2:
        lo, hi = (float(x) * scale for x in stored["ci95"])
        return Interval(value, int(stored.get("n") or result.n or 0),
                        float(stored.get("stderr") or 0.0) * scale, lo, hi, str(stored.get("method", "stored")))
    return None


def paired_items(a: TaskResult, b: TaskResult, metric: str | None = None) -> tuple[ItemStats, ItemStats] | None:
    """Both models' item statistics of `metric` (default: a's headline) on the items they share (matched by id;
    by position when no ids are stored and the counts agree); None when they cannot be paired."""
    metric = metric or a.metric
    sa, sb = a.stats_for(metric), b.stats_for(metric)
    if sa is None or sb is None or a.ids is None or b.ids is None:
        return None
    if any(i is None for i in (*a.ids, *b.ids)):
        return (sa, sb) if sa.n == sb.n else None
    aligned = align_items(a.ids, b.ids)
    if aligned is None or not aligned[0]:
        return None
    return sa.take(aligned[0]), sb.take(aligned[1])


def delta_replicates(a: TaskResult, b: TaskResult, n_boot: int = N_BOOT,
                     metric: str | None = None) -> tuple[PairedDelta, np.ndarray] | None:
    """Paired bootstrap of a - b on `metric` (default: a's headline; displayed units) and its resampled
    differences: the score is recomputed on both models for every resample, so a corpus score such as MCC or F1,
    which is no mean of per-item numbers, is compared as it is defined."""
    metric = metric or a.metric
    pair = paired_items(a, b, metric)
    if pair is None:
        return None
    sa, sb = pair
    scale = display_scale(metric)
    reps = paired_replicates(sa, sb, metric, n_boot, task_seed(a.task, a.mode)) * scale
    point = (sa.scores()[metric] - sb.scores()[metric]) * scale
    return delta_from_replicates(point, reps, sa.n), reps
