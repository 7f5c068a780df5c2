"""The tables a report page shows, format-free: columns, rows and cells (findap.report.cells), which
findap.report.markdown_page and findap.report.html_page write out each in its own syntax.

A column's `kind` says what it holds: `label` and `name` (text; `name` is the row's own name, set in italics on an
average row), `score` (one model's ScoreCell), `number`, `tasks` (the tasks a mean is over) and `relation` (how a
task relates to what its run trained on, and why).

Where some run's relations come from its curation, a task row's last column says how the task relates to what its
run trained on and why (`trained: curated source fpb (dataset key fpb)`; findap.report.novelty), per model where
the runs of the row's models disagree.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

from findap.report.board import Leaderboard, Row
from findap.report.cells import ScoreCell, best_models, fmt, fmt_count, score_cell
from findap.report.layout import CAPABILITY_TITLE
from findap.report.legend import CAPABILITY_NOTE, TASK_SET_NOTE
from findap.report.run_logs import StageCost

TEXT_KINDS = ("label", "name", "tasks", "relation")  # left-aligned text; `score` and `number` are right-aligned


@dataclass
class Column:
    title: str
    kind: str = "label"


@dataclass
class TableRow:
    cells: list[str | ScoreCell]
    average: bool = False


@dataclass
class Table:
    columns: list[Column]
    rows: list[TableRow] = field(default_factory=list)


@dataclass
class Section:
    """A titled table with the note that explains it (empty: none)."""

    title: str
    table: Table
    note: str = ""


def _score_columns(board: Leaderboard) -> list[Column]:
    return [Column(m, "score") for m in board.models]


def _score_cells(board: Leaderboard, row: Row) -> list[ScoreCell]:
    best = best_models(row)
    return [score_cell(board, row, m, m in best) for m in board.models]


def has_relations(board: Leaderboard) -> bool:
    """Task tables get the relation column when some run's relations were derived from its curation; with none,
    every task keeps its YAML tag and the lines above the tables say so once."""
    return any(c.get("derived") for c in board.curations) and any(r.relations for r in board.rows)


def relation_text(board: Leaderboard, row: Row) -> str:
    """`trained: curated source fpb (dataset key fpb)`; where the models' runs disagree, `a, b: ...; c: ...`."""
    if row.kind != "task" or not row.relations:
        return ""
    by_text: dict[str, list[str]] = {}
    for m in board.models:
        if m in row.relations:
            by_text.setdefault(row.relations[m], []).append(m)
    if len(by_text) == 1:
        return next(iter(by_text))
    return "; ".join(f"{', '.join(models)}: {text}" for text, models in by_text.items())


def mean_metric(row: Row) -> str:
    """What a mean averages, e.g. `mean of mcc, entity_f1` (each task's score as it entered)."""
    return "mean of " + ", ".join(dict.fromkeys(row.metrics)) if row.metrics else ""


def n_text(row: Row) -> str:
    """Items behind a task row: one number, or each model's when they differ."""
    counts = [row.n.get(m) for m in row.n if row.n.get(m) is not None]
    distinct = list(dict.fromkeys(counts))
    return "/".join(str(c) for c in distinct) if distinct else ""


def group_title(row: Row) -> str:
    return f"{CAPABILITY_TITLE.get(row.capability, row.capability)} / {row.domain}"


def task_table(board: Leaderboard, rows: Sequence[Row]) -> Table:
    """Task rows and the average row closing each capability x domain group (Table 6)."""
    relation = has_relations(board)
    table = Table([Column("group"), Column("task", "name"), Column("metric"), *_score_columns(board),
                   Column("n", "number"), *([Column("relation", "relation")] if relation else [])])
    last_group = None
    for row in rows:
        group = group_title(row)
        shown = group if group != last_group else ""
        last_group = group
        label = row.label + ("*" if row.judged and row.kind == "task" else "")
        metric = row.metric if row.kind == "task" else mean_metric(row)
        cells = [shown, label, metric, *_score_cells(board, row), n_text(row)]
        table.rows.append(TableRow(cells + ([relation_text(board, row)] if relation else []),
                                   average=row.kind == "average"))
    return table


def capability_table(board: Leaderboard, rows: Sequence[Row]) -> Table:
    """FinCap cells: one row per capability x domain x novelty, the mean of its tasks."""
    table = Table([Column("capability"), Column("domain"), Column("novelty"), *_score_columns(board),
                   Column("tasks", "tasks")])
    last = None
    for row in rows:
        capability = CAPABILITY_TITLE.get(row.capability, row.capability)
        table.rows.append(TableRow([capability if capability != last else "", row.domain, row.novelty,
                                    *_score_cells(board, row), ", ".join(row.tasks)]))
        last = capability
    return table


def task_set_table(board: Leaderboard, rows: Sequence[Row]) -> Table:
    table = Table([Column("task set", "name"), *_score_columns(board), Column("tasks", "tasks")])
    table.rows = [TableRow([row.label, *_score_cells(board, row), ", ".join(row.tasks)]) for row in rows]
    return table


def sections(board: Leaderboard) -> list[Section]:
    """The leaderboard's tables in page order: the FinCap cells and the task sets per split, then the task rows
    per split and relation."""
    out = []
    for split in dict.fromkeys(r.split for r in board.capabilities):
        out.append(Section(f"FinCap capabilities - {split}",
                           capability_table(board, [r for r in board.capabilities if r.split == split]),
                           CAPABILITY_NOTE))
    for split in dict.fromkeys(r.split for r in board.task_sets):
        out.append(Section(f"Task sets - {split}",
                           task_set_table(board, [r for r in board.task_sets if r.split == split]), TASK_SET_NOTE))
    for split, novelty, rows in _task_sections(board):
        out.append(Section(f"{split.capitalize()} - {novelty}", task_table(board, rows)))
    return out


def _task_sections(board: Leaderboard) -> list[tuple[str, str, list[Row]]]:
    """(split, novelty, rows) in table order."""
    out: list[tuple[str, str, list[Row]]] = []
    for row in board.rows:
        if not out or out[-1][:2] != (row.split, row.novelty):
            out.append((row.split, row.novelty, []))
        out[-1][2].append(row)
    return out


def judge_table(board: Leaderboard) -> Table | None:
    """Per judge-scored task, the share of verdicts the judge's answer could not be parsed from; None when none
    failed."""
    judged = [r for r in board.rows if r.judged and r.parse_failure_rate]
    if not judged:
        return None
    table = Table([Column("task"), *[Column(m, "number") for m in board.models]])
    table.rows = [TableRow([r.label, *[fmt(100 * r.parse_failure_rate[m], 1) + "%" if m in r.parse_failure_rate
                                       else "–" for m in board.models]]) for r in judged]
    return table


def cost_table(costs: Sequence[StageCost]) -> Table:
    table = Table([Column("run"), Column("stage"), *[Column(t, "number") for t in
                   ("done", "wall time (s)", "tokens", "tokens/s", "peak RSS (GB)")]])
    table.rows = [TableRow([c.run, c.stage, "yes" if c.done else "no", fmt(c.wall_s), fmt_count(c.tokens),
                            fmt_count(c.tokens_per_s), fmt(c.peak_rss_gb, 2)]) for c in costs]
    return table
