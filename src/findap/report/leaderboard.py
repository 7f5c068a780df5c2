"""The numbers of the report: task rows in Table 6 order with an average row closing each group, the FinCap cells
and the named task sets, each with 95% intervals and paired deltas against the base model.

One row per task and answer mode, one column per model; cells hold the task's primary metric (fractions x100,
judge scores on their 1-10 scale). Average rows average the tasks' bootstrap resamples, so they carry intervals
too. Averages, FinCap cells and task sets take each task by its chance-corrected score (MCC) where its results
have one, so a constant answer (MCC 0) never reads as a gain there; their deltas and paired tests are on the same
score.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from findap.eval.uncertainty import N_BOOT, Interval, bootstrap, delta_from_replicates, percentile_interval, task_seed
from findap.report.board import Leaderboard, Row
from findap.report.collect import TaskResult
from findap.report.intervals import cell_interval, delta_replicates
from findap.report.layout import (
    CAPABILITY_ORDER, CAPABILITY_TITLE, DETAIL_METRICS, DOMAIN_ORDER, NOVELTY_ORDER, RAW_SCALE_METRICS, SPLIT_ORDER,
    SUMMARY_METRIC, display_scale,
)
from findap.report.multiplicity import adjust_marks, parse_adjust


def _order(value: str, order: Sequence[str]) -> int:
    return order.index(value) if value in order else len(order)


def _row_label(task: str, mode: str) -> str:
    return task if mode == "direct" else f"{task} ({mode})"


@dataclass
class _Resamples:
    """A task row's bootstrap resamples kept for its group's average row (displayed units)."""

    per_model: dict[str, np.ndarray] = field(default_factory=dict)
    deltas: dict[str, np.ndarray] = field(default_factory=dict)


def _task_row(key: tuple, cells: dict[str, TaskResult], models: list[str], base: str | None,
              n_boot: int) -> tuple[Row, Row, _Resamples]:
    """The task's row, the row it enters averages as (itself, or its MCC when every model has one) and that
    row's resamples."""
    split, novelty, capability, domain, task, mode = key
    any_result = next(iter(cells.values()))
    row = Row(kind="task", label=_row_label(task, mode), split=split, novelty=novelty, capability=capability,
              domain=domain, metric=any_result.metric, judged=any(c.judged for c in cells.values()),
              values={m: cells[m].value if m in cells else None for m in models},
              parse_failure_rate={m: c.scores["parse_failure_rate"] for m, c in cells.items() if c.judged},
              n={m: cells[m].n if m in cells else None for m in models})
    for name in DETAIL_METRICS:
        shown = {m: cells[m].shown(name) if m in cells else None for m in models}
        if name != row.metric and any(v is not None for v in shown.values()):
            row.detail_values[name] = shown
            row.details[name] = {m: cell_interval(c, n_boot, name) for m, c in cells.items()}
    row.top_pred = {m: c.top_pred for m, c in cells.items() if c.top_pred is not None}
    row.constant = {m: [row.label] for m, c in cells.items() if c.constant}
    row.relations = {m: c.relation for m, c in cells.items() if c.relation}
    resamples = _score_row(row, cells, base, n_boot)
    if row.metric == SUMMARY_METRIC or not all(c.raw(SUMMARY_METRIC) is not None for c in cells.values()):
        return row, row, resamples
    summary = Row(kind="task", label=row.label, split=split, novelty=novelty, capability=capability, domain=domain,
                  metric=SUMMARY_METRIC, judged=row.judged, n=dict(row.n), constant=row.constant,
                  values={m: cells[m].shown(SUMMARY_METRIC) if m in cells else None for m in models})
    row.summary = summary
    return row, summary, _score_row(summary, cells, base, n_boot)


def _score_row(row: Row, cells: dict[str, TaskResult], base: str | None, n_boot: int) -> _Resamples:
    """Fill the row's intervals and paired deltas on its metric; return the resamples its averages need."""
    resamples = _Resamples()
    for m, result in cells.items():
        row.intervals[m] = cell_interval(result, n_boot, row.metric)
        stats = result.stats_for(row.metric)
        if stats is not None and row.values.get(m) is not None:
            resamples.per_model[m] = bootstrap(stats, row.metric, n_boot,
                                               task_seed(result.task, result.mode)) * display_scale(row.metric)
    if base is not None and base in cells:
        for m, result in cells.items():
            if m == base:
                continue
            paired = delta_replicates(result, cells[base], n_boot, row.metric)
            row.paired[m] = paired[0] if paired else None
            if paired:
                resamples.deltas[m] = paired[1]
    return resamples


def build_leaderboard(results: Sequence[TaskResult], base: str | None = None, n_boot: int = N_BOOT,
                      task_sets: dict[str, Sequence[str]] | None = None, adjust: str = "none") -> Leaderboard:
    """Task rows in Table 6 order with an average row after each split/novelty/capability/domain group, the FinCap
    capability rows, and one row per split for each named task set (`task_sets`: name -> task names).

    A group average for a model is the plain mean of the task values it has in that group (rows it lacks are
    skipped and `n_tasks` says how many went in), so it is comparable only between models with the same count;
    the Markdown and HTML mark such partial averages. Each task enters by its MCC where every model of the row has
    one (classification, multiple choice over one fixed label set), else by its headline.

    `adjust` (none, holm, bh): how the paired tests' marks are decided; see `adjust_marks`.
    """
    adjust = parse_adjust(adjust)
    models = sorted({r.model for r in results})
    if base is not None and base not in models:
        raise ValueError(f"base model {base!r} is not among the results' models {models}")
    if base is not None:
        models = [base] + [m for m in models if m != base]
    by_key: dict[tuple, dict[str, TaskResult]] = {}
    for r in results:
        by_key.setdefault(r.key, {})[r.model] = r

    def sort_key(key: tuple):
        split, novelty, capability, domain, task, mode = key
        return (_order(split, SPLIT_ORDER), _order(novelty, NOVELTY_ORDER), _order(capability, CAPABILITY_ORDER),
                _order(domain, DOMAIN_ORDER), task, mode != "direct", mode)

    rows: list[Row] = []
    group: list[tuple[Row, Row, _Resamples]] = []
    cells: dict[tuple, list[tuple[Row, _Resamples]]] = {}
    for key in sorted(by_key, key=sort_key):
        if group and (group[0][0].split, group[0][0].novelty, group[0][0].capability, group[0][0].domain) != key[:4]:
            rows += _close_group(group, models, base)
            group = []
        row, summary, resamples = _task_row(key, by_key[key], models, base, n_boot)
        group.append((row, summary, resamples))
        split, novelty, capability, domain = key[:4]
        cells.setdefault((split, capability, domain, novelty), []).append((summary, resamples))
    if group:
        rows += _close_group(group, models, base)
    task_rows = [row_and_resamples for found in cells.values() for row_and_resamples in found]
    board = Leaderboard(models=models, rows=rows, base=base, n_boot=n_boot,
                        capabilities=_capability_rows(cells, models, base),
                        task_sets=_task_set_rows(task_rows, task_sets or {}, {key[5] for key in by_key}, models,
                                                 base))
    adjust_marks(board, adjust)
    return board


def parse_task_sets(specs: Sequence[str]) -> dict[str, list[str]]:
    """`NAME=task,task,...` strings (the CLI's --task-set) as {name: [task, ...]}."""
    sets: dict[str, list[str]] = {}
    for spec in specs:
        name, sep, tasks = spec.partition("=")
        names = [t.strip() for t in tasks.split(",") if t.strip()]
        if not sep or not name.strip() or not names:
            raise ValueError(f"{spec!r}: expected NAME=task,task,... (e.g. finance=fpb,fomc)")
        if name.strip() in sets:
            raise ValueError(f"task set {name.strip()!r} is given twice")
        sets[name.strip()] = names
    return sets


def _task_set_rows(task_rows: list[tuple[Row, _Resamples]], task_sets: dict[str, Sequence[str]], modes: set[str],
                   models: list[str], base: str | None) -> list[Row]:
    """Per set, split and answer mode, the mean of the set's task rows in that mode, with the interval and paired
    delta of an average row (a set scored in two modes gets a row for each, named like its task rows:
    `finance (loglik)`). A set is shown in a split and mode only when every one of its tasks was scored there: a
    mean over fewer tasks would not be the set the user named."""
    out = []
    for name, tasks in task_sets.items():
        for split in sorted({r.split for r, _ in task_rows}, key=lambda s: _order(s, SPLIT_ORDER)):
            for mode in sorted(modes, key=lambda m: (m != "direct", m)):
                wanted = list(dict.fromkeys(_row_label(t, mode) for t in tasks))
                found = {r.label: (r, s) for r, s in task_rows if r.split == split and r.label in wanted}
                if len(found) != len(wanted):
                    continue
                row = _mean_row([found[t] for t in wanted], models, base)
                row.kind, row.label, row.split = "set", _row_label(name, mode), split
                out.append(row)
    return out


def _capability_rows(cells: dict[tuple, list[tuple[Row, _Resamples]]], models: list[str],
                     base: str | None) -> list[Row]:
    """The FinCap view (the paper's capability x domain x similar/novel picture): per split, capability, domain
    and novelty the mean of the task rows' displayed values, with the interval and paired delta of an average row
    (the tasks' bootstrap resamples averaged). Ordered split, capability, domain, novelty."""
    def order(key: tuple):
        split, capability, domain, novelty = key
        return (_order(split, SPLIT_ORDER), _order(capability, CAPABILITY_ORDER), _order(domain, DOMAIN_ORDER),
                _order(novelty, NOVELTY_ORDER))

    out = []
    for key in sorted(cells, key=order):
        row = _mean_row(cells[key], models, base)
        row.kind = "capability"
        row.label = f"{CAPABILITY_TITLE.get(row.capability, row.capability)} / {row.domain} / {row.novelty}"
        out.append(row)
    return out


def _mean_row(group: list[tuple[Row, _Resamples]], models: list[str], base: str | None) -> Row:
    """The average row of `group`; the mean of one task is that task, so it keeps the task's own interval and
    paired delta (Wilson for accuracy) instead of the bootstrap of an average."""
    row = _average_row(group, models, base)
    if len(group) == 1:
        task_row = group[0][0]
        row.intervals, row.paired = dict(task_row.intervals), dict(task_row.paired)
    return row


def _close_group(group: list[tuple[Row, Row, _Resamples]], models: list[str], base: str | None) -> list[Row]:
    """The group's rows plus its average row (over the rows as they enter averages); a one-task group gets none
    (it would repeat the task row)."""
    rows = [row for row, _, _ in group]
    return rows + [_average_row([(s, r) for _, s, r in group], models, base)] if len(group) > 1 else rows


def _average_row(group: list[tuple[Row, _Resamples]], models: list[str], base: str | None) -> Row:
    """Mean of the group's percentage rows; a group of judge ratings only (MT-bench) averages the ratings.

    Mixing a 1-10 rating into a mean of percentages would make the number meaningless, so it is left out. The
    interval averages the tasks' resamples (tasks resampled independently), so it exists only when every task
    the model has in the group could be resampled; a delta's interval likewise needs every task paired.
    """
    first = group[0][0]
    percent = [(r, s) for r, s in group if r.metric not in RAW_SCALE_METRICS]
    averaged = percent or group
    values, counts, intervals, paired = {}, {}, {}, {}
    for m in models:
        present = [(r, s) for r, s in averaged if r.values.get(m) is not None]
        values[m] = sum(r.values[m] for r, _ in present) / len(present) if present else None
        counts[m] = len(present)
        reps = [s.per_model.get(m) for _, s in present]
        intervals[m] = _mean_interval(values[m], reps, sum(r.n.get(m) or 0 for r, _ in present))
    if base is not None:
        for m in models:
            if m == base:
                continue
            both = [(r, s) for r, s in averaged if r.values.get(m) is not None and r.values.get(base) is not None]
            same_tasks = len(both) == counts[m] == counts[base] and both
            deltas = [s.deltas.get(m) for _, s in both]
            if same_tasks and all(d is not None for d in deltas):
                point = sum(r.paired[m].delta for r, _ in both) / len(both)
                n_items = sum(r.paired[m].n for r, _ in both)
                paired[m] = delta_from_replicates(point, np.mean(deltas, axis=0), n_items)
            else:
                paired[m] = None
    constant = {m: [t for r, _ in averaged if r.values.get(m) is not None for t in r.constant.get(m, [])]
                for m in models}
    return Row(kind="average", label="average", split=first.split, novelty=first.novelty,
               capability=first.capability, domain=first.domain, values=values, n_tasks=counts,
               metric="" if percent else averaged[0][0].metric, intervals=intervals, paired=paired,
               n={m: None for m in models}, tasks=[r.label for r, _ in averaged],
               metrics=[r.metric for r, _ in averaged], constant={m: c for m, c in constant.items() if c})


def _mean_interval(value: float | None, reps: list, n_items: int) -> Interval | None:
    if value is None or not reps or any(r is None for r in reps):
        return None
    mean = np.mean(reps, axis=0)
    lo, hi = percentile_interval(mean)
    return Interval(value, n_items, float(np.std(mean, ddof=1)), lo, hi, "bootstrap")
