"""Report data: reading result files, the leaderboard (Table 6 layout), deltas with paired significance, costs.

Everything here is numbers; findap.eval.render draws them (Markdown, HTML, plots) and findap.eval.report ties the
two together. Layout of the leaderboard (Table 6 of Ke et al. 2025): split role (unseen first), then similar vs
novel, then capability (concept, task, reasoning, IF/chat), then domain (finance, general, math); one row per task
and answer mode, one column per model, and an average row closing each capability x domain group. Cells hold the
task's primary metric; fractions are x100 (the paper's percentages), judge scores on their own 1-10 scale.

Uncertainty: a result file whose samples reproduce its headline score gives that score's item statistics
(findap.eval.metrics.ItemStats); from them each cell gets a 95% interval and each delta against the base model a
paired bootstrap over the items both models answered (matched by item id). Average rows average the tasks'
bootstrap resamples, so they carry intervals too. A file whose samples cannot reproduce its score (hand-written,
third-party, scored by an older metric) keeps the interval it stores under `uncertainty`, if any, and is never
paired.

A result JSON is recognised by having `task` and a `scores` dict (the eval runner's per-task files); every other
JSON under an input directory is ignored.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from findap.eval.metrics import ItemStats, item_stats, mean_stats, primary_metric
from findap.eval.uncertainty import (
    N_BOOT, Interval, PairedDelta, align_items, bootstrap, delta_from_replicates, interval, paired_replicates,
    percentile_interval, task_seed,
)
from findap.io import DataError, read_jsonl_tolerant

SPLIT_ORDER = ("unseen", "dev")
NOVELTY_ORDER = ("similar", "novel")
CAPABILITY_ORDER = ("concept", "task", "reasoning", "chat")
DOMAIN_ORDER = ("finance", "general", "math")
CAPABILITY_TITLE = {"concept": "Concept", "task": "Task", "reasoning": "Reasoning", "chat": "IF/Chat"}

# Judge ratings stay on their 1-10 scale; every other metric is a fraction shown as a percentage.
RAW_SCALE_METRICS = {"score"}


def display_scale(metric: str) -> float:
    return 1.0 if metric in RAW_SCALE_METRICS or metric.startswith("score_") else 100.0


# ---------------------------------------------------------------------------------------------------------------
# Reading results
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TaskResult:
    """One model's result on one task in one answer mode, as read from a per-task result JSON.

    `stats` are the headline metric's item statistics (None when the samples cannot reproduce the score), `ids`
    the item ids in the same order, `stored_interval` the file's own `uncertainty` entry for the headline.
    """

    task: str
    model: str
    scores: dict
    metric: str
    mode: str = "direct"
    capability: str = "task"
    domain: str = "finance"
    novelty: str = "similar"
    split: str = "unseen"
    path: str = ""
    n: int | None = None
    stats: ItemStats | None = field(default=None, repr=False, compare=False)
    ids: list | None = field(default=None, repr=False, compare=False)
    stored_interval: dict | None = None

    @property
    def scale(self) -> float:
        return display_scale(self.metric)

    @property
    def value(self) -> float | None:
        """The headline number as displayed (x100 for fractions); None when the metric is missing or NaN."""
        raw = self.scores.get(self.metric)
        if not isinstance(raw, (int, float)) or isinstance(raw, bool) or not math.isfinite(raw):
            return None
        return raw * self.scale

    @property
    def judged(self) -> bool:
        return "parse_failure_rate" in self.scores

    @property
    def key(self) -> tuple:
        return (self.split, self.novelty, self.capability, self.domain, self.task, self.mode)

    def to_dict(self) -> dict:
        """The JSON form (item statistics left out: they are recomputed from the result file)."""
        return {k: v for k, v in asdict(self).items() if k not in ("stats", "ids")}


def _first(record: dict, *names: str, default=None):
    for name in names:
        if record.get(name) not in (None, ""):
            return record[name]
    return default


def _model_from_path(path: Path) -> str:
    """Fallback label: the run directory a result sits in (runs/<run>/eval/<task>.json -> <run>)."""
    parts = path.parts
    if "eval" in parts:
        i = len(parts) - 1 - parts[::-1].index("eval")
        if i > 0:
            return parts[i - 1]
    return path.parent.name


NOT_JUDGED = "(not judged)"


def _judge_stats(samples: list[dict], metric: str) -> ItemStats | None:
    """Item statistics of judge scores: MT-bench's `score` is the mean over every parsed turn (a ratio of sums
    over questions); correctness `accuracy` counts unparsed verdicts as wrong."""
    if metric == "score" and all(isinstance(s.get("turn_scores"), list) for s in samples):
        rows = [(sum(v for v in s["turn_scores"] if v is not None), sum(v is not None for v in s["turn_scores"]))
                for s in samples]
        table = np.asarray(rows, dtype=float).reshape(-1, 2)
        return ItemStats(table, lambda sums: {"score": np.divide(sums[..., 0], sums[..., 1],
                                                                 out=np.full(sums.shape[:-1], np.nan),
                                                                 where=sums[..., 1] != 0)})
    if metric == "accuracy" and all("correct" in s for s in samples):
        return mean_stats({"accuracy": [float(s["correct"] is True) for s in samples]}, bernoulli=["accuracy"])
    return None


def _headline_stats(record: dict, metric: str, answer_type: str | None) -> ItemStats | None:
    """The headline's item statistics recomputed from the stored samples, or None when that is not possible or
    does not give back the stored score (then an interval would describe some other number)."""
    from findap.eval.runner import preds_and_docs
    from findap.eval.task import TaskSpec

    samples = record.get("samples")
    stored = record["scores"].get(metric)
    if not samples or not isinstance(stored, (int, float)) or not math.isfinite(stored):
        return None
    try:
        if answer_type == "judge" or record.get("judge"):
            stats = _judge_stats(samples, metric)
        else:
            spec = TaskSpec.model_validate((record.get("settings") or {}).get("spec"))
            preds, docs = preds_and_docs(record)
            stats = item_stats(preds, docs, spec, str(record.get("mode", "direct"))).get(metric)
    except Exception:  # noqa: BLE001 - any unreadable or foreign sample layout simply means "no interval"
        return None
    if stats is None or not math.isclose(stats.scores()[metric], stored, rel_tol=1e-6, abs_tol=1e-9):
        return None
    return stats


def parse_result(record: dict, path: Path) -> TaskResult:
    """Turn one result record into a TaskResult; a bad field raises DataError naming the file and the field.

    Reads the eval runner's layout (`tags: {capability, domain, novelty, role, answer_type}`, `settings.spec`)
    and flat records with the same names at the top level (`split` or `split_role` for the role).
    """
    scores = record.get("scores")
    if not isinstance(scores, dict):
        raise DataError(path, None, "scores", f"expected an object of metric -> number, got {type(scores).__name__}")
    tags = record.get("tags") if isinstance(record.get("tags"), dict) else {}
    flat = {**record, **tags}
    spec = (record.get("settings") or {}).get("spec") or {}
    answer_type = _first(flat, "answer_type")
    metric = primary_metric(scores, _first(record, "primary_metric", "metric"), answer_type,
                            spec.get("metrics") or ())
    if metric is None and record.get("needs_judge"):
        metric = NOT_JUDGED  # answers written, judge not run yet: the row shows "–"
    if metric is None:
        raise DataError(path, None, "scores", "no numeric metric in the result")
    checked = {
        "capability": (_first(flat, "capability", default="task"), CAPABILITY_ORDER),
        "domain": (_first(flat, "domain", default="finance"), DOMAIN_ORDER),
        "novelty": (_first(flat, "novelty", default="similar"), NOVELTY_ORDER),
        "split": (_first(flat, "split", "split_role", "role", default="unseen"), SPLIT_ORDER),
    }
    for name, (value, allowed) in checked.items():
        if value not in allowed:
            raise DataError(path, None, name, f"{value!r} is not one of {list(allowed)}")
    stats = _headline_stats(record, metric, answer_type) if metric != NOT_JUDGED else None
    stored = (record.get("uncertainty") or {}).get(metric) if isinstance(record.get("uncertainty"), dict) else None
    n = record.get("n") if isinstance(record.get("n"), int) else (stats.n if stats else None)
    return TaskResult(
        task=str(record["task"]),
        model=str(_first(record, "model_label", "model", default=_model_from_path(path))),
        scores=scores,
        metric=metric,
        mode=str(_first(record, "mode", default="direct")),
        capability=checked["capability"][0],
        domain=checked["domain"][0],
        novelty=checked["novelty"][0],
        split=checked["split"][0],
        path=str(path),
        n=n,
        stats=stats,
        ids=[s.get("id") for s in record["samples"]] if stats is not None else None,
        stored_interval=stored if isinstance(stored, dict) else None,
    )


# JSON files a run directory holds that are never results (model and tokenizer files of saved checkpoints, our own
# report output): skipped without being read, so a report over a whole run stays fast.
NOT_RESULTS = {"config.json", "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
               "generation_config.json", "model.safetensors.index.json", "trainer_state.json", "vocab.json",
               "added_tokens.json", "adapter_config.json", "leaderboard.json", "summary.json", "manifest.json"}


def _result_files(inputs: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += sorted(q for q in p.rglob("*.json") if q.is_file() and q.name not in NOT_RESULTS)
        else:
            raise FileNotFoundError(f"report input {p} does not exist")
    return files


def load_results(inputs: Iterable[str | Path]) -> list[TaskResult]:
    """Every task result under `inputs` (files or directories). When several files hold the same model, task,
    mode and split (a re-run written elsewhere), the most recently modified one wins."""
    found: dict[tuple, TaskResult] = {}
    for path in sorted(_result_files(inputs), key=lambda p: (p.stat().st_mtime_ns, str(p))):
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise DataError(path, err.lineno, None, f"invalid JSON: {err.msg}") from None
        if not (isinstance(record, dict) and "task" in record and "scores" in record):
            continue
        result = parse_result(record, path)
        found[(result.model, *result.key)] = result
    return list(found.values())


# ---------------------------------------------------------------------------------------------------------------
# Uncertainty of cells and deltas
# ---------------------------------------------------------------------------------------------------------------


def cell_interval(result: TaskResult, n_boot: int = N_BOOT) -> Interval | None:
    """The cell's 95% interval in displayed units: from the item statistics, else the file's stored one."""
    if result.value is None:
        return None
    if result.stats is not None:
        return interval(result.stats, result.metric, n_boot, task_seed(result.task, result.mode)).scaled(result.scale)
    stored = result.stored_interval
    if stored and isinstance(stored.get("ci95"), list) and len(stored["ci95"]) == 2:
        lo, hi = (float(x) * result.scale for x in stored["ci95"])
        return Interval(result.value, int(stored.get("n") or result.n or 0),
                        float(stored.get("stderr") or 0.0) * result.scale, lo, hi, str(stored.get("method", "stored")))
    return None


def paired_items(a: TaskResult, b: TaskResult) -> tuple[ItemStats, ItemStats] | None:
    """Both models' item statistics on the items they share (matched by id; by position when no ids are
    stored and the counts agree); None when they cannot be paired."""
    if a.stats is None or b.stats is None or a.ids is None or b.ids is None:
        return None
    if any(i is None for i in (*a.ids, *b.ids)):
        return (a.stats, b.stats) if a.stats.n == b.stats.n else None
    aligned = align_items(a.ids, b.ids)
    if aligned is None or not aligned[0]:
        return None
    return a.stats.take(aligned[0]), b.stats.take(aligned[1])


def delta_replicates(a: TaskResult, b: TaskResult, n_boot: int = N_BOOT) -> tuple[PairedDelta, np.ndarray] | None:
    """Paired bootstrap of a - b (displayed units) and its resampled differences."""
    pair = paired_items(a, b)
    if pair is None:
        return None
    sa, sb = pair
    reps = paired_replicates(sa, sb, a.metric, n_boot, task_seed(a.task, a.mode)) * a.scale
    point = (sa.scores()[a.metric] - sb.scores()[a.metric]) * a.scale
    return delta_from_replicates(point, reps, sa.n), reps


# ---------------------------------------------------------------------------------------------------------------
# The leaderboard
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Row:
    """A table row: one task (kind='task') or a group average (kind='average'); values[model] is displayed.

    `intervals[model]` is the value's 95% interval, `paired[model]` the paired comparison with the base model
    (both in displayed units, None where they cannot be computed); `n[model]` the items behind the value.
    """

    kind: str
    label: str
    split: str
    novelty: str
    capability: str
    domain: str
    values: dict[str, float | None]
    metric: str = ""
    judged: bool = False
    parse_failure_rate: dict[str, float] = field(default_factory=dict)
    n_tasks: dict[str, int] = field(default_factory=dict)
    n: dict[str, int | None] = field(default_factory=dict)
    intervals: dict[str, Interval | None] = field(default_factory=dict)
    paired: dict[str, PairedDelta | None] = field(default_factory=dict)
    tasks: list[str] = field(default_factory=list)  # the task rows an average or capability row is the mean of


@dataclass
class Leaderboard:
    """`rows`: the Table 6 leaderboard; `capabilities`: the FinCap view, one row per split x capability x domain x
    novelty holding the mean over its task rows (kind='capability'), one-task cells included."""

    models: list[str]
    rows: list[Row]
    base: str | None = None
    n_boot: int = N_BOOT
    capabilities: list[Row] = field(default_factory=list)
    task_sets: list[Row] = field(default_factory=list)

    def delta(self, row: Row, model: str) -> float | None:
        """Model minus base as displayed; the paired estimate when the two were paired on a subset of items."""
        if self.base is None or model == self.base:
            return None
        if row.paired.get(model) is not None:
            return row.paired[model].delta
        a, b = row.values.get(model), row.values.get(self.base)
        return None if a is None or b is None else a - b

    def row_dict(self, row: Row) -> dict:
        d = asdict(row)
        d["deltas"] = {m: self.delta(row, m) for m in self.models if self.base and m != self.base}
        for m, p in row.paired.items():
            if p is not None:
                d["paired"][m]["significant"] = p.significant
        return d

    def to_dict(self) -> dict:
        return {"models": self.models, "base": self.base, "n_boot": self.n_boot,
                "rows": [self.row_dict(r) for r in self.rows],
                "capabilities": [self.row_dict(r) for r in self.capabilities],
                "task_sets": [self.row_dict(r) for r in self.task_sets]}


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
              n_boot: int) -> tuple[Row, _Resamples]:
    split, novelty, capability, domain, task, mode = key
    any_result = next(iter(cells.values()))
    row = Row(kind="task", label=_row_label(task, mode), split=split, novelty=novelty, capability=capability,
              domain=domain, metric=any_result.metric, judged=any(c.judged for c in cells.values()),
              values={m: cells[m].value if m in cells else None for m in models},
              parse_failure_rate={m: c.scores["parse_failure_rate"] for m, c in cells.items() if c.judged},
              n={m: cells[m].n if m in cells else None for m in models})
    resamples = _Resamples()
    for m, result in cells.items():
        row.intervals[m] = cell_interval(result, n_boot)
        if result.stats is not None and result.value is not None:
            resamples.per_model[m] = bootstrap(result.stats, result.metric, n_boot,
                                               task_seed(result.task, result.mode)) * result.scale
    if base is not None and base in cells:
        for m, result in cells.items():
            if m == base:
                continue
            paired = delta_replicates(result, cells[base], n_boot)
            row.paired[m] = paired[0] if paired else None
            if paired:
                resamples.deltas[m] = paired[1]
    return row, resamples


def build_leaderboard(results: Sequence[TaskResult], base: str | None = None, n_boot: int = N_BOOT,
                      task_sets: dict[str, Sequence[str]] | None = None) -> Leaderboard:
    """Task rows in Table 6 order with an average row after each split/novelty/capability/domain group, the FinCap
    capability rows, and one row per split for each named task set (`task_sets`: name -> task names).

    A group average for a model is the plain mean of the displayed task values it has in that group (rows it
    lacks are skipped and `n_tasks` says how many went in), so it is comparable only between models with the
    same count; the Markdown and HTML mark such partial averages.
    """
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
    group: list[tuple[Row, _Resamples]] = []
    cells: dict[tuple, list[tuple[Row, _Resamples]]] = {}
    for key in sorted(by_key, key=sort_key):
        if group and (group[0][0].split, group[0][0].novelty, group[0][0].capability, group[0][0].domain) != key[:4]:
            rows += _close_group(group, models, base)
            group = []
        task_row = _task_row(key, by_key[key], models, base, n_boot)
        group.append(task_row)
        split, novelty, capability, domain = key[:4]
        cells.setdefault((split, capability, domain, novelty), []).append(task_row)
    if group:
        rows += _close_group(group, models, base)
    task_rows = [row_and_resamples for found in cells.values() for row_and_resamples in found]
    return Leaderboard(models=models, rows=rows, base=base, n_boot=n_boot,
                       capabilities=_capability_rows(cells, models, base),
                       task_sets=_task_set_rows(task_rows, task_sets or {}, models, base))


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


def _task_set_rows(task_rows: list[tuple[Row, _Resamples]], task_sets: dict[str, Sequence[str]], models: list[str],
                   base: str | None) -> list[Row]:
    """Per set and split, the mean of the set's direct-mode task rows, with the interval and paired delta of an
    average row. A set is shown in a split only when every one of its tasks was scored there: a mean over fewer
    tasks would not be the set the user named."""
    out = []
    for name, tasks in task_sets.items():
        wanted = list(dict.fromkeys(tasks))
        for split in sorted({r.split for r, _ in task_rows}, key=lambda s: _order(s, SPLIT_ORDER)):
            found = {r.label: (r, s) for r, s in task_rows if r.split == split and r.label in wanted}
            if len(found) != len(wanted):
                continue
            row = _mean_row([found[t] for t in wanted], models, base)
            row.kind, row.label, row.split = "set", name, split
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


def _close_group(group: list[tuple[Row, _Resamples]], models: list[str], base: str | None) -> list[Row]:
    """The group's rows plus its average row; a one-task group gets none (it would repeat the task row)."""
    rows = [row for row, _ in group]
    return rows + [_average_row(group, models, base)] if len(group) > 1 else rows


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
    return Row(kind="average", label="average", split=first.split, novelty=first.novelty,
               capability=first.capability, domain=first.domain, values=values, n_tasks=counts,
               metric="" if percent else averaged[0][0].metric, intervals=intervals, paired=paired,
               n={m: None for m in models}, tasks=[r.label for r, _ in averaged])


def _mean_interval(value: float | None, reps: list, n_items: int) -> Interval | None:
    if value is None or not reps or any(r is None for r in reps):
        return None
    mean = np.mean(reps, axis=0)
    lo, hi = percentile_interval(mean)
    return Interval(value, n_items, float(np.std(mean, ddof=1)), lo, hi, "bootstrap")


# ---------------------------------------------------------------------------------------------------------------
# Costs, training curves and curation notes from run directories
# ---------------------------------------------------------------------------------------------------------------

TOKEN_KEYS = ("tokens", "train_tokens", "tokens_seen", "trained_tokens", "n_tokens", "total_tokens",
              "generated_tokens")
LOSS_KEYS = ("loss", "train_loss")
DEV_LOSS_KEYS = ("dev_loss", "eval_loss", "val_loss")


@dataclass
class StageCost:
    run: str
    stage: str
    done: bool
    wall_s: float | None
    tokens: float | None
    peak_rss_gb: float | None = None  # the stage process's VmHWM, or its launcher's workers' when larger

    @property
    def tokens_per_s(self) -> float | None:
        if self.tokens is None or not self.wall_s:
            return None
        return self.tokens / self.wall_s


def _stage_dirs(inputs: Iterable[str | Path]) -> list[Path]:
    """Stage directories of every run under `inputs`: a directory holding DONE or metrics.jsonl."""
    seen, out = set(), []
    for item in inputs:
        p = Path(item)
        if not p.is_dir():
            continue
        for marker in sorted([*p.rglob("DONE"), *p.rglob("metrics.jsonl")]):
            d = marker.parent
            if d not in seen:
                seen.add(d)
                out.append(d)
    # a stage's own sub-phases (train/groups/group1/DONE) belong to that stage's row, not rows of their own
    return sorted(d for d in out if not any(a in seen for a in d.parents))


def _read_json_file(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise DataError(path, err.lineno, None, f"invalid JSON: {err.msg}") from None
    if not isinstance(data, dict):
        raise DataError(path, None, None, "expected a JSON object (a stage summary)")
    return data


def _number(record: dict, keys: Sequence[str]) -> float | None:
    for k in keys:
        v = record.get(k)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return float(v)
    return None


def stage_costs(inputs: Iterable[str | Path]) -> list[StageCost]:
    """Wall time and tokens per stage (the DONE summary first, then the last metrics.jsonl record) and its peak
    resident memory from DONE (findap.host_memory.peak_memory: the larger of its own and its workers' peak)."""
    costs = []
    for d in _stage_dirs(inputs):
        done = _read_json_file(d / "DONE") if (d / "DONE").exists() else {}
        metrics = read_jsonl_tolerant(d / "metrics.jsonl")
        last = metrics[-1] if metrics else {}
        wall = _number(done, ("wall_s", "wall_time_s", "elapsed_s")) or _number(last, ("time", "wall_s"))
        tokens = _number(done, TOKEN_KEYS)
        if tokens is None:
            tokens = _number(last, TOKEN_KEYS)
        peaks = [p for p in (_number(done, ("peak_rss_gb",)), _number(done, ("peak_rss_children_gb",)))
                 if p is not None]
        costs.append(StageCost(run=d.parent.name, stage=d.name, done=bool(done), wall_s=wall, tokens=tokens,
                               peak_rss_gb=max(peaks) if peaks else None))
    return costs


@dataclass
class LossCurve:
    """One stage's losses in one curriculum phase (a train group; None for a stage that logs no `phase`).

    Steps run on across the stage's phases: the train loop counts each group's optimizer steps from 1, so group2's
    step 1 is drawn after group1's last step (`offset` = the running step at which this phase starts) instead of
    jumping back to the start of the axis.
    """

    run: str
    stage: str
    steps: list[float]
    loss: list[float]
    dev_steps: list[float]
    dev_loss: list[float]
    phase: str | None = None
    offset: float = 0.0


def _row_step(row: dict, index: int) -> float:
    step = _number(row, ("step", "global_step", "optimizer_step"))
    return float(index) if step is None else step


def stage_loss_curves(run: str, stage: str, rows: list[dict]) -> list[LossCurve]:
    """A stage's metrics.jsonl rows as one curve per phase, in the order the phases first appear."""
    by_phase: dict[str | None, LossCurve] = {}
    last_step = 0.0  # the largest running step so far: where a phase that starts now continues the axis
    for i, row in enumerate(rows):
        phase = row.get("phase") if isinstance(row.get("phase"), str) else None
        if phase not in by_phase:
            by_phase[phase] = LossCurve(run, stage, [], [], [], [], phase=phase, offset=last_step if by_phase else 0.0)
        curve = by_phase[phase]
        step = curve.offset + _row_step(row, i)
        last_step = max(last_step, step)
        if (v := _number(row, LOSS_KEYS)) is not None:
            curve.steps.append(step)
            curve.loss.append(v)
        if (v := _number(row, DEV_LOSS_KEYS)) is not None:
            curve.dev_steps.append(step)
            curve.dev_loss.append(v)
    return [c for c in by_phase.values() if c.loss or c.dev_loss]


def loss_curves(inputs: Iterable[str | Path]) -> list[LossCurve]:
    """Training (and development) loss against step from every stage's metrics.jsonl that logs a loss, one curve
    per stage and curriculum phase."""
    curves = []
    for d in _stage_dirs(inputs):
        curves += stage_loss_curves(d.parent.name, d.name, read_jsonl_tolerant(d / "metrics.jsonl"))
    return curves


@dataclass
class CurationNote:
    """What a run's curate stage says about decontamination (its DONE summary's `decontamination.note`)."""

    run: str
    note: str


def curation_notes(inputs: Iterable[str | Path]) -> list[CurationNote]:
    notes = []
    for d in _stage_dirs(inputs):
        if d.name != "curate" or not (d / "DONE").exists():
            continue
        decontamination = _read_json_file(d / "DONE").get("decontamination")
        note = decontamination.get("note") if isinstance(decontamination, dict) else None
        if isinstance(note, str) and note.strip():
            notes.append(CurationNote(run=d.parent.name, note=note.strip()))
    return notes
