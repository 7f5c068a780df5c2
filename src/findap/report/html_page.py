"""The report as one self-contained HTML page: inline CSS, plots embedded as base64 PNG, no external URL.

Only significant differences to the base model are coloured (green better, red worse); the rest are grey, so
noise does not read as a result. Hovering a cell's interval, difference or `≡` says where it comes from.
"""
from __future__ import annotations

import base64
import html
from typing import Sequence

from findap.report.board import Leaderboard
from findap.report.cells import ScoreCell
from findap.report.legend import METHODS, comparisons_lines, legend, relation_lines, significance_summary
from findap.report.run_logs import CurationNote, StageCost
from findap.report.tables import TEXT_KINDS, Table, cost_table, judge_table, sections

esc = html.escape

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222;
 padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:right;white-space:nowrap}
th{background:#f3f5f8}td.l,th.l{text-align:left}
tr.avg td{background:#f7f7f2;font-style:italic}
td.best{font-weight:700}
.ci{color:#777;font-size:.8rem}
.up{color:#1a7f37}.down{color:#b42318}.ns{color:#888}.sig{font-weight:700}
.note{color:#555;font-size:.85rem}
.legend{color:#444;font-size:.85rem;margin:.3rem 0;padding-left:1.2rem}.legend li{margin:.1rem 0}
.legend code{background:#f3f5f8;padding:0 .25rem;border-radius:3px}
.det{color:#555;font-size:.75rem;font-weight:400}.const{color:#b42318;font-weight:700}
td.tasks{color:#666;font-size:.8rem;white-space:normal;text-align:left;max-width:22rem}
td.rel{color:#555;font-size:.8rem;white-space:normal;text-align:left;min-width:14rem;max-width:26rem}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1rem;align-items:start}
.plots figure{margin:0}.plots figure.wide{grid-column:1/-1}
.plots img{max-width:100%;border:1px solid #eee}
"""
# the class of a text cell by its column's kind; score and number cells have none
TEXT_CLASS = {"label": "l", "name": "l", "tasks": "tasks", "relation": "rel"}


def _title(note: str) -> str:
    return f" title='{esc(note, quote=True)}'" if note else ""


def score_cell(cell: ScoreCell) -> str:
    text = esc(cell.value)
    if cell.interval:
        text += f" <span class='ci'{_title(cell.interval_note)}>{esc(cell.interval)}</span>"
    text += "†" if cell.partial else ""
    if cell.delta:
        text += f' <span class="{cell.direction}"{_title(cell.delta_note)}>{esc(cell.delta)}</span>'
    if cell.constant:
        text += f" <span class='const'{_title(cell.constant_note)}>{esc(cell.constant)}</span>"
    parts = [esc(d.text) + (f" <span class='ci'>{esc(d.interval)}</span>" if d.interval else "")
             for d in cell.details]
    if parts:
        text += f"<div class='det'>{' · '.join(parts)}</div>"
    return f"<td{_class('best' if cell.best else None)}>{text}</td>"


def table(data: Table) -> list[str]:
    """`<table>` with its header on the first line and one line per row; an average row has class `avg`."""
    head = "".join(f"<th class='l'>{esc(c.title)}</th>" if c.kind in TEXT_KINDS else f"<th>{esc(c.title)}</th>"
                   for c in data.columns)
    lines = [f"<table><tr>{head}</tr>"]
    for row in data.rows:
        cells = "".join(score_cell(cell) if isinstance(cell, ScoreCell) else
                        f"<td{_class(TEXT_CLASS.get(column.kind))}>{esc(cell)}</td>"
                        for column, cell in zip(data.columns, row.cells))
        lines.append(f"<tr{_class('avg' if row.average else None)}>{cells}</tr>")
    return lines + ["</table>"]


def _class(name: str | None) -> str:
    return f" class='{name}'" if name else ""


def _png_width(png: bytes) -> int:
    """Pixel width from the PNG header (IHDR holds width at bytes 16-20, big-endian)."""
    return int.from_bytes(png[16:20], "big")


def _titled(heading: str, lines: list[str]) -> list[str]:
    """`lines` with the section heading in front of their first line."""
    return [f"<h2>{esc(heading)}</h2>{lines[0]}", *lines[1:]]


def render_html(board: Leaderboard, costs: list[StageCost], images: dict[str, bytes], title: str,
                notes: Sequence[CurationNote] = ()) -> str:
    """The whole page; `images` maps each plot's name to its PNG bytes."""
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>",
           f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>"]
    if board.base:
        out.append(f"<p>Base model: <b>{esc(board.base)}</b>. Only significant differences are coloured "
                   "(<span class='up sig'>green</span> better, <span class='down sig'>red</span> worse).</p>")
    out.append("<ul class='legend'>" + "".join(f"<li><code>{esc(key)}</code> {esc(text)}</li>"
                                               for key, text in legend(board)) + "</ul>")
    out.append(f"<p class='note'>{esc(METHODS)}</p>")
    out += [f"<p class='note'>{esc(line)}</p>" for line in comparisons_lines(board)]
    out += [f"<p class='note'>{esc(line)}</p>" for line in relation_lines(board)]
    summary = significance_summary(board)
    if summary:
        out.append("<ul class='legend'>" + "".join(f"<li>{esc(model + text)}</li>" for model, text in summary)
                   + "</ul>")
    for section in sections(board):
        note = f"<p class='note'>{esc(section.note)}</p>" if section.note else ""
        out.append(f"<h2>{esc(section.title)}</h2>{note}")
        out += table(section.table)
    judged = judge_table(board)
    if judged is not None:
        out += _titled("Judge parse failures", table(judged))
    if notes:
        out += _titled("Decontamination", ["<ul>" + "".join(f"<li><b>{esc(n.run)}</b>: {esc(n.note)}</li>"
                                                          for n in notes) + "</ul>"])
    if costs:
        out += _titled("Cost", table(cost_table(costs)))
    if images:
        figures = []
        for name, png in images.items():
            data = base64.b64encode(png).decode("ascii")
            wide = " class='wide'" if _png_width(png) > 800 else ""  # wide charts take a whole row
            figures.append(f"<figure{wide}><img alt='{esc(name)}' src='data:image/png;base64,{data}'></figure>")
        out += _titled("Plots", ["<div class='plots'>", *figures, "</div>"])
    out.append("</body></html>")
    return "\n".join(out)
