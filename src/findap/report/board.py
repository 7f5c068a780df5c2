"""The leaderboard as data: its rows (task rows, group averages, FinCap cells, task sets) with values, intervals
and paired deltas per model, in displayed units. findap.report.leaderboard fills it, the pages and plots read it,
and `Leaderboard.to_dict` is the report's leaderboard.json.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from findap.eval.uncertainty import N_BOOT, Interval, PairedDelta


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
