"""PNG plots of a report: the FinCap picture, grouped bars per capability, and loss curves per curriculum group.

Plots are built in two steps: the numbers that go into them (`loss_plot_data`, `bar_layout`, `value_axis`, plain
data a test can check) and the matplotlib figure drawn from those numbers. Drawing uses matplotlib's object API
with the Agg canvas: no pyplot global state, no display needed.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Sequence

from findap.report.board import Leaderboard, Row
from findap.report.layout import CAPABILITY_TITLE, RAW_SCALE_METRICS
from findap.report.run_logs import LossCurve


PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
MISSING = "n/a"  # written where a model has no value, so that a missing bar is never read as a 0.0 bar
SHORT_SERIES = 12  # a line with this many points or fewer gets markers: one point alone draws nothing otherwise


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def _plain_axes(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)


@dataclass
class Bar:
    """One model's bar in one row: `value` None means the model has no result there (drawn as 'n/a')."""

    model: str
    color: str
    x: float
    value: float | None
    err_low: float = 0.0
    err_high: float = 0.0
    significant: bool = False

    @property
    def top(self) -> float:
        return (self.value or 0.0) + self.err_high


def bar_layout(rows: Sequence[Row], models: Sequence[str]) -> list[Bar]:
    """Every (row, model) slot of a grouped bar chart: one group per row, one bar per model, missing ones kept."""
    width = 0.8 / len(models)
    bars = []
    for i, row in enumerate(rows):
        for k, model in enumerate(models):
            x = i + (k - (len(models) - 1) / 2) * width
            value = row.values.get(model)
            bar = Bar(model, PALETTE[k % len(PALETTE)], x, value)
            ci = row.intervals.get(model)
            if value is not None and ci is not None:
                bar.err_low, bar.err_high = max(0.0, value - ci.lo), max(0.0, ci.hi - value)
            paired = row.paired.get(model)
            bar.significant = value is not None and paired is not None and paired.significant
            bars.append(bar)
    return bars


def value_axis(bars: Sequence[Bar], empty_top: float = 10.0) -> tuple[float, float]:
    """y limits: from 0 (or below it, for a negative MCC) to the highest interval end, with headroom for `*`.
    When every bar is 0 the axis runs 0..`empty_top`, so the bars read as zeros on a scale rather than
    matplotlib's -0.05..0.05 around a collapsed line."""
    ends = [0.0]
    for bar in bars:
        if bar.value is not None:
            ends += [bar.value - bar.err_low, bar.value + bar.err_high]
    low, high = min(ends), max(ends)
    if high - low < 1e-9:
        high = low + empty_top
    pad = 0.1 * (high - low)
    return (low - pad if low < 0 else 0.0), high + pad


def bars_figure(rows: Sequence[Row], models: Sequence[str], title: str, xlabels: Sequence[str], ylabel: str,
                crowded: bool = False):
    """Grouped bars with 95% error bars, `*` above a bar significantly different from the base, and 'n/a' where
    a model has no value. Returns the matplotlib Figure (drawn to PNG by the callers)."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    bars = bar_layout(rows, models)
    width = 0.8 / len(models)
    # Width grows with the number of bars up to a page's width; past that the bars get thinner instead.
    fig = Figure(figsize=(min(12.0, max(4.5, 1.5 + 0.3 * len(rows) * (len(models) + 1))), 3.8))
    ax = fig.add_subplot()
    ax.set_xlim(-0.6, len(rows) - 0.4)
    low, high = value_axis(bars)
    ax.set_ylim(low, high)
    drawn = [b for b in bars if b.value is not None]
    if drawn:
        ax.bar([b.x for b in drawn], [b.value for b in drawn], width, color=[b.color for b in drawn],
               yerr=[[b.err_low for b in drawn], [b.err_high for b in drawn]], capsize=2,
               error_kw={"elinewidth": 0.8, "ecolor": "#333333"})
    for bar in bars:
        if bar.value is None:
            ax.text(bar.x, max(low, 0.0) + 0.02 * (high - low), MISSING, rotation=90, ha="center", va="bottom",
                    fontsize=7, color="#777777")
        elif abs(bar.value) < 1e-9:  # a zero-height bar draws nothing: say it is there and is 0
            ax.text(bar.x, 0.01 * (high - low), "0", ha="center", va="bottom", fontsize=7, color=bar.color,
                    fontweight="bold")
        elif bar.significant:
            ax.annotate("*", (bar.x, bar.top), ha="center", va="bottom", fontsize=10, fontweight="bold")
    if low < 0:
        ax.axhline(0.0, color="#333333", linewidth=0.8)
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(xlabels, fontsize=7 if crowded else 8, rotation=35 if crowded else 0,
                       ha="right" if crowded else "center", rotation_mode="anchor")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    _plain_axes(ax)
    handles = [Patch(color=PALETTE[k % len(PALETTE)], label=m) for k, m in enumerate(models)]
    ax.legend(handles=handles, fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


def _bars_title(what: str, board: Leaderboard) -> str:
    return f"{what}\nerror bars: 95% interval" + ("; *: significant vs base" if board.base else "")


def capability_figure(board: Leaderboard, split: str, capability: str):
    """Figures 2-9 style: one group per task row of one split x capability; None when there is no such row."""
    rows = [r for r in board.rows if r.kind == "task" and r.split == split and r.capability == capability]
    if not rows:
        return None
    crowded = len(rows) * len(board.models) > 18
    # Crowded axes get bare task names (the tables carry domain and novelty); two-line rotated labels collide.
    labels = [r.label if crowded else f"{r.label}\n({r.domain}, {r.novelty})" for r in rows]
    judged_only = all(r.metric in RAW_SCALE_METRICS for r in rows)
    return bars_figure(rows, board.models, _bars_title(f"{CAPABILITY_TITLE.get(capability, capability)} ({split})",
                                                       board),
                       labels, "judge score (1-10)" if judged_only else "score (x100)", crowded)


def capability_bars(board: Leaderboard, split: str, capability: str) -> bytes | None:
    fig = capability_figure(board, split, capability)
    return None if fig is None else _png(fig)


def fincap_rows(board: Leaderboard, split: str) -> list[Row]:
    """The capability cells of one split that share the percentage scale (a judge-rating-only cell, MT-bench on
    1-10, would need its own axis: it stays in the table)."""
    return [r for r in board.capabilities if r.split == split and r.metric not in RAW_SCALE_METRICS]


def fincap_figure(board: Leaderboard, split: str):
    """The FinCap picture: one group per capability x domain x novelty cell (mean of its tasks), one bar per
    model; None when the split has no such cell."""
    rows = fincap_rows(board, split)
    if not rows:
        return None
    labels = [f"{CAPABILITY_TITLE.get(r.capability, r.capability)}\n{r.domain}\n{r.novelty}" for r in rows]
    return bars_figure(rows, board.models,
                       _bars_title(f"FinCap ({split}): mean over each cell's tasks (classification: MCC)", board),
                       labels, "mean score (x100)")


def fincap_bars(board: Leaderboard, split: str) -> bytes | None:
    fig = fincap_figure(board, split)
    return None if fig is None else _png(fig)


@dataclass
class Series:
    """One line of a loss plot."""

    label: str
    x: list[float]
    y: list[float]
    color: str
    dashed: bool  # development loss
    markers: bool


@dataclass
class LossPlotData:
    title: str
    xlabel: str
    series: list[Series]
    boundaries: list[tuple[float, str]]  # (x, name of the curriculum phase starting there)


def loss_plot_data(curves: Sequence[LossCurve]) -> LossPlotData:
    """One train and one dev series per run and curriculum phase (one colour each), phase starts after the first
    marked on the running step axis. A run's name is left out of the labels when only one run is drawn."""
    several_runs = len({c.run for c in curves}) > 1
    series, boundaries = [], []
    for k, curve in enumerate(curves):
        color = PALETTE[k % len(PALETTE)]
        name = " ".join(p for p in (curve.run if several_runs else "", curve.phase or "") if p)
        prefix = f"{name} " if name else ""
        if curve.loss:
            series.append(Series(f"{prefix}train", curve.steps, curve.loss, color, False,
                                 len(curve.loss) <= SHORT_SERIES))
        if curve.dev_loss:
            series.append(Series(f"{prefix}dev", curve.dev_steps, curve.dev_loss, color, True, True))
        if curve.phase and curve.offset > 0 and (curve.offset + 0.5, curve.phase) not in boundaries:
            boundaries.append((curve.offset + 0.5, curve.phase))
    phased = any(c.phase for c in curves)
    title = f"{curves[0].stage} loss" + ("" if several_runs else f" ({curves[0].run})")
    xlabel = "optimizer step, running across curriculum groups" if phased else "step"
    return LossPlotData(title, xlabel, series, boundaries)


def loss_plot(curves: Sequence[LossCurve]) -> bytes:
    """Loss against step for one stage: train solid, dev dashed, one colour per run and curriculum group."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    data = loss_plot_data(curves)
    fig = Figure(figsize=(6.0, 3.4))
    ax = fig.add_subplot()
    for s in data.series:
        ax.plot(s.x, s.y, color=s.color, linestyle="--" if s.dashed else "-", linewidth=1.2,
                marker="o" if s.markers else None, markersize=3 if s.dashed else 2.5, label=s.label)
    for x, phase in data.boundaries:
        ax.axvline(x, color="#999999", linestyle=":", linewidth=1.0)
        ax.annotate(f" {phase} starts", (x, 1.0), xycoords=("data", "axes fraction"), ha="left", va="top",
                    fontsize=7, color="#555555")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # optimizer steps are whole numbers
    ax.set_xlabel(data.xlabel)
    ax.set_ylabel("loss")
    ax.set_title(data.title, fontsize=10)
    ax.grid(alpha=0.3)
    _plain_axes(ax)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)
