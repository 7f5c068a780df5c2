"""The report as Markdown: report.md, with the plots linked from plots/."""
from __future__ import annotations

from typing import Sequence

from findap.report.board import Leaderboard
from findap.report.cells import ScoreCell
from findap.report.legend import METHODS, comparisons_lines, legend, relation_lines, significance_summary
from findap.report.run_logs import CurationNote, StageCost
from findap.report.tables import Table, cost_table, judge_table, sections


def _escape(text: str) -> str:
    """Text inside a table cell: `|` would end the cell and `*` start emphasis."""
    return text.replace("|", "\\|").replace("*", "\\*")


def score_cell(cell: ScoreCell) -> str:
    """`**57.6 ±2.1 (+4.2 [+1.0, +7.3]*)** ≡<br>MCC 31.0 ±4.0 · mF1 50.2 ±3.1` (bold: best in the row)."""
    text = cell.value + (f" {cell.interval}" if cell.interval else "") + ("†" if cell.partial else "")
    if cell.delta:
        text += f" {cell.delta}"
    text = (f"**{text}**" if cell.best else text) + (f" {cell.constant}" if cell.constant else "")
    if cell.details:
        text += "<br>" + " · ".join(d.text + (f" {d.interval}" if d.interval else "")
                                    for d in cell.details).replace("|", "\\|")
    return text


def table(data: Table) -> list[str]:
    """A pipe table; an average row's name in italics."""
    lines = ["| " + " | ".join(c.title for c in data.columns) + " |", "|" + "---|" * len(data.columns)]
    for row in data.rows:
        cells = []
        for column, cell in zip(data.columns, row.cells):
            if isinstance(cell, ScoreCell):
                cells.append(score_cell(cell))
            else:
                text = _escape(cell)
                cells.append(f"*{text}*" if row.average and column.kind == "name" else text)
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def render_markdown(board: Leaderboard, costs: list[StageCost], plots: dict[str, str], title: str,
                    notes: Sequence[CurationNote] = ()) -> str:
    """The whole page; `plots` maps each plot's name to its path relative to the page."""
    lines = [f"# {title}", ""]
    if board.base:
        lines += [f"Base model: **{board.base}**.", ""]
    lines += [f"- `{key}`: {text}" for key, text in legend(board)] + ["", METHODS, ""]
    lines += [line for text in comparisons_lines(board) for line in (text, "")]
    lines += [line for text in relation_lines(board) for line in (text, "")]
    if board.base:
        lines += [f"- **{model}**{text}" for model, text in significance_summary(board)] + [""]
    for section in sections(board):
        lines += [f"## {section.title}", ""] + ([section.note, ""] if section.note else [])
        lines += table(section.table) + [""]
    judged = judge_table(board)
    if judged is not None:
        lines += ["### Judge parse failures", ""] + table(judged) + [""]
    if notes:
        lines += ["## Decontamination", ""] + [f"- **{n.run}**: {n.note}" for n in notes] + [""]
    if costs:
        lines += ["## Cost", ""] + table(cost_table(costs)) + [""]
    if plots:
        lines += ["## Plots", ""]
        for name, rel in plots.items():
            lines += [f"![{name}]({rel})", ""]
    return "\n".join(lines)
