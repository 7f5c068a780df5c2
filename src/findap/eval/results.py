"""Report data: reading result files, the leaderboard (Table 6 layout), deltas with paired significance, costs.

Everything here is numbers; findap.eval.render draws them (Markdown, HTML, plots) and findap.eval.report ties the
two together. Layout of the leaderboard (Table 6 of Ke et al. 2025): split role (unseen first), then trained,
similar and novel (the task's relation to what the run trained on, decided by findap.report.novelty from the
run's curation; the YAML tag where a run has none), then capability (concept, task, reasoning, IF/chat), then
domain (finance, general, math); one row per task and answer mode, one column per model, and an average row
closing each capability x domain group. Cells hold the task's primary metric; fractions are x100 (the paper's
percentages), judge scores on their own 1-10 scale.

Uncertainty: a result file whose samples reproduce its headline score gives that score's item statistics
(findap.eval.metrics.ItemStats); from them each cell gets a 95% interval and each delta against the base model a
paired bootstrap over the items both models answered (matched by item id). Average rows average the tasks'
bootstrap resamples, so they carry intervals too. A file whose samples cannot reproduce its score (hand-written,
third-party, scored by an older metric) keeps the interval it stores under `uncertainty`, if any, and is never
paired.

Skill, not format: classification and multiple-choice rows also carry MCC, macro-F1 and the share of the most
frequent answer (`top_pred_share`, with which answer it is); a model giving one answer to at least 90% of a task's
items is flagged as constant. Averages, FinCap cells and task sets take each task by its chance-corrected score
(MCC) where its results have one, so a constant answer (MCC 0) never reads as a gain there; their deltas and
paired tests are on the same score.

Multiplicity: every paired test the report shows is one comparison; `adjust` (holm or bh) marks differences by
p-values adjusted over all of them instead of by each test's own 95% interval.

A result JSON is recognised by having `task` and a `scores` dict (the eval runner's per-task files); every other
JSON under an input directory is ignored.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from findap.eval.metrics import ItemStats, item_stats, mean_stats, primary_metric, top_prediction
from findap.eval.uncertainty import (
    ADJUSTMENTS, N_BOOT, Interval, PairedDelta, adjust_p_values, align_items, bootstrap, delta_from_replicates,
    interval, paired_replicates, percentile_interval, task_seed,
)
from findap.io import DataError, read_jsonl_tolerant

SPLIT_ORDER = ("unseen", "dev")
# A task's relation to what the run trained on (findap.report.novelty): its own dataset, its task type, neither.
# Result files carry the YAML tag (similar or novel); the report replaces it with the relation it derives.
NOVELTY_ORDER = ("trained", "similar", "novel")
CAPABILITY_ORDER = ("concept", "task", "reasoning", "chat")
DOMAIN_ORDER = ("finance", "general", "math")
CAPABILITY_TITLE = {"concept": "Concept", "task": "Task", "reasoning": "Reasoning", "chat": "IF/Chat"}

# Judge ratings stay on their 1-10 scale; every other metric is a fraction shown as a percentage.
RAW_SCALE_METRICS = {"score"}


def display_scale(metric: str) -> float:
    return 1.0 if metric in RAW_SCALE_METRICS or metric.startswith("score_") else 100.0


# Scores shown beside a task's headline when its results hold them: the chance-corrected MCC, macro-F1 (every
# class counts alike, so always answering the majority class scores low) and the most frequent answer's share.
DETAIL_METRICS = ("mcc", "f1_macro", "top_pred_share")
# A model giving one answer to at least this share of a task's items is flagged as constant: its accuracy and
# weighted F1 then measure how common that answer is among the gold labels, not skill.
CONSTANT_SHARE = 0.9
# The score a task enters averages, FinCap cells and task sets by, wherever all its models have it: chance-
# corrected, so that a constant answer scores 0 and a move to one can never count as a gain.
SUMMARY_METRIC = "mcc"


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# ---------------------------------------------------------------------------------------------------------------
# Reading results
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TaskResult:
    """One model's result on one task in one answer mode, as read from a per-task result JSON.

    `stats` are the headline metric's item statistics (None when the samples cannot reproduce the score), `ids`
    the item ids in the same order, `stored_interval` the file's own `uncertainty` entry for the headline.
    `score_stats` holds the item statistics of every score the samples give back (the headline's included),
    `stored_intervals` the file's whole `uncertainty` block, `top_pred` the most frequent answer (classification
    and multiple choice; None when the samples cannot be read). `spec` is the task spec the runner recorded
    (`settings.spec`), `relation` the task's relation to what this result's run trained on, with the reason
    (findap.report.novelty; empty until the report derives it).
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
    score_stats: dict[str, ItemStats] = field(default_factory=dict, repr=False, compare=False)
    stored_intervals: dict[str, dict] = field(default_factory=dict, repr=False)
    top_pred: str | None = None
    spec: dict | None = field(default=None, repr=False, compare=False)
    relation: str = ""

    def raw(self, name: str) -> float | None:
        """Score `name` on its own scale (a fraction or a rating): as the file stores it, else recomputed from
        the samples (a file written before the score existed); None when neither has a finite number."""
        if _finite(self.scores.get(name)):
            return float(self.scores[name])
        stats = self.score_stats.get(name)
        value = stats.scores()[name] if stats is not None else None
        return value if _finite(value) else None

    def shown(self, name: str) -> float | None:
        """Score `name` as displayed (x100 for fractions)."""
        value = self.raw(name)
        return None if value is None else value * display_scale(name)

    def stats_for(self, name: str) -> ItemStats | None:
        return self.stats if name == self.metric else self.score_stats.get(name)

    @property
    def constant(self) -> bool:
        """One answer to at least CONSTANT_SHARE of the items."""
        share = self.raw("top_pred_share")
        return share is not None and share >= CONSTANT_SHARE

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
        return {k: v for k, v in asdict(self).items() if k not in ("stats", "ids", "score_stats", "spec")}


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


def _agrees(value: float, stored: float) -> bool:
    return math.isclose(value, stored, rel_tol=1e-6, abs_tol=1e-9)


def _score_stats(record: dict, metric: str, answer_type: str | None) -> tuple[dict[str, ItemStats], str | None]:
    """Every score's item statistics recomputed from the stored samples, and the most frequent answer; nothing
    when that is not possible or the headline does not come back as stored (then an interval would describe some
    other number). Another score the file stores with a different value is left out as well; one it lacks (a
    file written before that score existed) is kept, computed from the same samples the headline checked."""
    from findap.eval.runner import preds_and_docs
    from findap.eval.task import TaskSpec

    samples = record.get("samples")
    stored = record["scores"].get(metric)
    if not samples or not _finite(stored):
        return {}, None
    top = None
    try:
        if answer_type == "judge" or record.get("judge"):
            judged = _judge_stats(samples, metric)
            found = {metric: judged} if judged is not None else {}
        else:
            spec = TaskSpec.model_validate((record.get("settings") or {}).get("spec"))
            preds, docs = preds_and_docs(record)
            for doc, sample in zip(docs, samples):
                if isinstance(sample, dict) and "choices" in sample:  # log-likelihood samples keep their options
                    doc["choices"] = sample["choices"]
            found = item_stats(preds, docs, spec, str(record.get("mode", "direct")))
            if spec.answer_type in ("classification", "multiple_choice"):
                top = top_prediction(preds, docs, spec)[0]
    except Exception:  # noqa: BLE001 - any unreadable or foreign sample layout simply means "no interval"
        return {}, None
    headline = found.get(metric)
    if headline is None or not _agrees(headline.scores()[metric], stored):
        return {}, None
    theirs = record["scores"]
    kept = {name: stats for name, stats in found.items()
            if not _finite(theirs.get(name)) or _agrees(stats.scores()[name], theirs[name])}
    return kept, top


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
    score_stats, top = _score_stats(record, metric, answer_type) if metric != NOT_JUDGED else ({}, None)
    stats = score_stats.get(metric)
    uncertainty = record.get("uncertainty") if isinstance(record.get("uncertainty"), dict) else {}
    stored_intervals = {k: v for k, v in uncertainty.items() if isinstance(v, dict)}
    stored = stored_intervals.get(metric)
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
        stored_interval=stored,
        score_stats=score_stats,
        stored_intervals=stored_intervals,
        top_pred=top,
        spec=spec if isinstance(spec, dict) and spec else None,
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


# ---------------------------------------------------------------------------------------------------------------
# The leaderboard
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Row:
    """A table row: one task (kind='task') or a group average (kind='average'); values[model] is displayed.

    `intervals[model]` is the value's 95% interval, `paired[model]` the paired comparison with the base model
    (both in displayed units, None where they cannot be computed); `n[model]` the items behind the value.

    Task rows also hold `details[score][model]`, the DETAIL_METRICS other than the headline with their intervals
    (displayed units), `top_pred[model]` (the most frequent answer) and `summary`, the row as it enters averages
    when that score differs from the headline (MCC for classification). `constant[model]` lists the tasks
    behind the row on which the model gave one answer to at least CONSTANT_SHARE of the items. Rows that are
    means list their tasks in `tasks` and, in the same order, the score each task entered by in `metrics`.
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
    metrics: list[str] = field(default_factory=list)
    details: dict[str, dict[str, Interval | None]] = field(default_factory=dict)
    detail_values: dict[str, dict[str, float | None]] = field(default_factory=dict)
    top_pred: dict[str, str] = field(default_factory=dict)
    constant: dict[str, list[str]] = field(default_factory=dict)
    summary: Row | None = None
    # task rows: model -> the task's relation to what that model's run trained on, with why ("trained: curated
    # source fpb (dataset key fpb)"); `novelty` is the relation the row is grouped by
    relations: dict[str, str] = field(default_factory=dict)


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
    adjust: str = "none"
    comparisons: dict[str, int] = field(default_factory=dict)  # paired tests shown: "total" and per table
    # per run, what its relations were decided from (findap.report.novelty.Curation.summary); empty: not derived
    curations: list[dict] = field(default_factory=list)

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
        if row.summary is not None:
            d["summary"] = self.row_dict(row.summary)
        return d

    def to_dict(self) -> dict:
        return {"models": self.models, "base": self.base, "n_boot": self.n_boot, "adjust": self.adjust,
                "comparisons": self.comparisons, "rows": [self.row_dict(r) for r in self.rows],
                "capabilities": [self.row_dict(r) for r in self.capabilities],
                "task_sets": [self.row_dict(r) for r in self.task_sets], "curations": self.curations}


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
                        task_sets=_task_set_rows(task_rows, task_sets or {}, models, base))
    adjust_marks(board, adjust)
    return board


def parse_adjust(value: str) -> str:
    """The multiplicity adjustment named by `value` (the CLI's --adjust): none, holm or bh."""
    name = str(value).strip().lower()
    if name not in ADJUSTMENTS:
        raise ValueError(f"{value!r}: expected one of {', '.join(ADJUSTMENTS)} (none: each test's own 95% interval; "
                         "holm: family-wise error; bh: Benjamini-Hochberg false discovery rate)")
    return name


def _test_key(row: Row, model: str) -> tuple:
    """What a paired test compares: the model, the split and the (task, score) pairs averaged. An average row and
    its FinCap cell average the same tasks, and a one-task mean is its task's test: each is one comparison."""
    if row.kind == "task":
        return (model, row.split, ((row.label, row.metric),))
    return (model, row.split, tuple(sorted(zip(row.tasks, row.metrics))))


# The tables whose paired tests count as comparisons, in the order a test is attributed to the first that shows it
COMPARISON_TABLES = (("task rows", "rows", "task"), ("FinCap cells", "capabilities", None),
                     ("task sets", "task_sets", None), ("averages", "rows", "average"))


def adjust_marks(board: Leaderboard, adjust: str = "none") -> None:
    """Count the report's comparisons and, with `adjust` holm or bh, mark each paired test by its p-value adjusted
    over all of them (`PairedDelta.p_adjusted`; significant when at or below 5% and the interval excludes zero).

    The family is every distinct paired test the report shows: task rows, FinCap cells, task sets and average
    rows, a test shown twice (an average row and its FinCap cell, a one-task cell and its task's MCC) counted once.
    A task row's MCC row (`summary`) is shown only through a one-task cell and takes that cell's adjustment.
    """
    board.adjust = parse_adjust(adjust)
    tests: dict[tuple, float] = {}
    counts = {name: 0 for name, _, _ in COMPARISON_TABLES}
    shown: list[Row] = []
    for name, attribute, kind in COMPARISON_TABLES:
        for row in getattr(board, attribute):
            if kind is not None and row.kind != kind:
                continue
            shown.append(row)
            for model, paired in row.paired.items():
                if paired is not None and model != board.base and _test_key(row, model) not in tests:
                    tests[_test_key(row, model)] = paired.p_value
                    counts[name] += 1
    board.comparisons = {"total": len(tests), **counts}
    if board.adjust == "none" or not tests:
        return
    adjusted = dict(zip(tests, adjust_p_values(list(tests.values()), board.adjust)))
    for row in shown + [r.summary for r in board.rows if r.summary is not None]:
        for model, paired in row.paired.items():
            key = _test_key(row, model) if paired is not None else None
            if key in adjusted:
                row.paired[model] = replace(paired, p_adjusted=float(adjusted[key]), adjust=board.adjust)


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
