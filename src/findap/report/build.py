"""Reports: a leaderboard in the paper's Table 6 layout with intervals, paired deltas vs a base model, a cost table
and plots. This module ties the parts of findap.report together (docs/report.md lists them).

`build_report(inputs, out_dir, base=None)` reads run directories, eval output directories or single result JSON
files and writes, into `out_dir`:

    report.md          leaderboard + deltas + cost table, plots linked from plots/
    report.html        the same, self-contained: inline CSS, plots embedded as base64 PNG, no external URL
    leaderboard.json   the numbers behind the tables (rows, intervals, paired deltas, group averages, costs,
                       the number of paired tests and the multiplicity adjustment in force)
    plots/*.png        the FinCap picture (capability x domain x novelty means, one bar per model), grouped bars
                       with 95% intervals per capability (one bar per model), loss curves per curriculum group

Novelty is each task's relation to what the run trained on (trained, similar, novel), derived from the run's
curation manifest by findap.report.novelty; a run without one keeps the task YAMLs' tags, and the report says so.

The `report` stage of `findap run` is findap.report.stage, which calls build_report on the run directory.
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from findap.eval.uncertainty import N_BOOT
from findap.io import write_bytes, write_json, write_text
from findap.report.collect import TaskResult, load_results
from findap.report.html_page import render_html
from findap.report.layout import CAPABILITY_ORDER, SPLIT_ORDER
from findap.report.leaderboard import build_leaderboard
from findap.report.markdown_page import render_markdown
from findap.report.multiplicity import parse_adjust
from findap.report.novelty import relate_results
from findap.report.plots import capability_bars, fincap_bars, loss_plot
from findap.report.run_logs import LossCurve, curation_notes, loss_curves, stage_costs

__all__ = ["build_report", "load_results"]


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def build_report(
    inputs: Sequence[str | Path], out_dir: str | Path, base: str | None = None, title: str = "findap report",
    n_boot: int = N_BOOT, task_sets: dict[str, Sequence[str]] | None = None, adjust: str = "none",
) -> dict[str, str | list[str]]:
    """Read results and run logs under `inputs`, write the report files into `out_dir`, return their paths.

    `base` is a model label (as shown in the results) or an input path whose results all share one label;
    every other model's cells then carry a paired delta against it. `n_boot` bootstrap resamples per interval.
    `task_sets` (name -> task names) adds a table of each set's mean score, interval and paired delta.
    `adjust` decides the `*` marks: `none` (each paired test's own 95% interval), `holm` (Holm-adjusted p-values
    over every test the report shows) or `bh` (Benjamini-Hochberg); the report says which is in force and how
    many tests it made.
    """
    adjust = parse_adjust(adjust)  # a misspelt option fails before any file is read
    inputs = [Path(p) for p in inputs]
    if base is not None and Path(base).exists() and not any(_is_under(Path(base), p) for p in inputs):
        inputs.append(Path(base))  # a base run given by path is read even when not listed among the inputs
    results = load_results(inputs)
    if not results:
        raise ValueError(f"no task results (JSON with 'task' and 'scores') under {[str(p) for p in inputs]}")
    base = _resolve_base(base, results)
    # trained / similar / novel from what each run's curation trained on, not the YAML's fixed tag
    results, curations = relate_results(results, base)
    board = build_leaderboard(results, base=base, n_boot=n_boot, task_sets=task_sets, adjust=adjust)
    board.curations = [c.summary() for c in curations]
    costs = stage_costs(inputs)
    notes = curation_notes(inputs)

    out = Path(out_dir)
    images: dict[str, bytes] = {}
    for split in SPLIT_ORDER:
        png = fincap_bars(board, split)
        if png is not None:
            images[f"fincap_{split}"] = png
    for split in SPLIT_ORDER:
        for capability in CAPABILITY_ORDER:
            png = capability_bars(board, split, capability)
            if png is not None:
                images[f"{split}_{capability}"] = png
    by_stage: dict[str, list[LossCurve]] = {}
    for curve in loss_curves(inputs):
        by_stage.setdefault(curve.stage, []).append(curve)
    for stage, stage_curves in by_stage.items():
        images[f"loss_{_slug(stage)}"] = loss_plot(stage_curves)
    plot_paths = {name: write_bytes(out / "plots" / f"{name}.png", png) for name, png in images.items()}

    md = render_markdown(board, costs, {n: f"plots/{p.name}" for n, p in plot_paths.items()}, title, notes)
    page = render_html(board, costs, images, title, notes)
    data = {**board.to_dict(), "costs": [{**asdict(c), "tokens_per_s": c.tokens_per_s} for c in costs],
            "decontamination": [asdict(n) for n in notes], "results": [r.to_dict() for r in results]}
    return {
        "markdown": str(write_text(out / "report.md", md)),
        "html": str(write_text(out / "report.html", page)),
        "json": str(write_json(out / "leaderboard.json", data)),
        "plots": [str(p) for p in plot_paths.values()],
    }


def _is_under(path: Path, parent: Path) -> bool:
    return path.resolve().is_relative_to(parent.resolve())


def _resolve_base(base: str | None, results: list[TaskResult]) -> str | None:
    if base is None:
        return None
    labels = {r.model for r in results}
    if base in labels:
        return base
    p = Path(base)
    if p.exists():
        under = {r.model for r in results if _is_under(Path(r.path), p)}
        if len(under) == 1:
            return under.pop()
        raise ValueError(f"base {base!r}: expected the results under it to share one model label, found "
                         f"{sorted(under) or 'none'}")
    raise ValueError(f"base {base!r} is neither a model label {sorted(labels)} nor an input path")
