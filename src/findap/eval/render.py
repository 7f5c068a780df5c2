"""Drawing a leaderboard: Markdown, self-contained HTML and PNG plots (findap.eval.results holds the numbers).

Cell notation, in both Markdown and HTML:

    57.6 ±2.1 (+4.2 [+1.0, +7.3]*)

the value, the half-width of its 95% interval (`[lo, hi]` instead when the interval is far from symmetric), and
against the base model the paired difference with its 95% interval; `*` marks a difference whose interval excludes
zero (with a multiplicity adjustment, holm or bh: whose adjusted p-value is at most 5% as well). Deltas without
brackets could not be paired (a result file without per-item samples).

Classification and multiple-choice cells add a second line, `MCC 31.0 ±4.0 · mF1 50.2 ±3.1 · top neutral 62% ±4`,
and `≡` where the model gave one answer to at least 90% of the items (in a mean's cell: `≡` and those tasks).

Where some run's relations come from its curation, a task row's last column says how the task relates to what
its run trained on and why (`trained: curated source fpb (dataset key fpb)`; findap.report.novelty), per model
where the runs of the row's models disagree.

Plots are built in two steps: the numbers that go into them (`loss_plot_data`, `bar_layout`, `value_axis`, plain
data a test can check) and the matplotlib figure drawn from those numbers.
"""
from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from typing import Sequence

from findap.eval.results import (
    CAPABILITY_TITLE, COMPARISON_TABLES, CONSTANT_SHARE, RAW_SCALE_METRICS, SUMMARY_METRIC, CurationNote,
    Leaderboard, LossCurve, Row, StageCost,
)
from findap.eval.uncertainty import ALPHA, Interval, PairedDelta, smallest_p_value

PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
MISSING = "n/a"  # written where a model has no value, so that a missing bar is never read as a 0.0 bar
SHORT_SERIES = 12  # a line with this many points or fewer gets markers: one point alone draws nothing otherwise


# ---------------------------------------------------------------------------------------------------------------
# Plots (matplotlib's object API with the Agg canvas: no pyplot global state, no display needed)
# ---------------------------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------------------------
# Text pieces shared by Markdown and HTML
# ---------------------------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _fmt_count(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _digits(row: Row) -> int:
    return 2 if row.metric in RAW_SCALE_METRICS else 1


def _best(row: Row) -> set[str]:
    present = {m: v for m, v in row.values.items() if v is not None}
    if len(present) < 2:
        return set()
    top = max(present.values())
    return {m for m, v in present.items() if v == top}


def _sections(board: Leaderboard):
    """(split, novelty, rows) in table order."""
    out: list[tuple[str, str, list[Row]]] = []
    for row in board.rows:
        if not out or out[-1][:2] != (row.split, row.novelty):
            out.append((row.split, row.novelty, []))
        out[-1][2].append(row)
    return out


def _group_title(row: Row) -> str:
    return f"{CAPABILITY_TITLE.get(row.capability, row.capability)} / {row.domain}"


def _ci_text(value: float, ci: Interval, digits: int) -> str:
    """` ±2.1` (half-width of the 95% interval), or ` [0.0, 24.2]` when the interval is far from symmetric around
    the value (scores near 0 or 100), where a ± would put one end outside it."""
    half = (ci.hi - ci.lo) / 2
    if abs((ci.hi - value) - (value - ci.lo)) <= 0.2 * half:
        return f" ±{half:.{digits}f}"
    return f" [{ci.lo:.{digits}f}, {ci.hi:.{digits}f}]"


def _value_text(row: Row, model: str) -> str:
    """`57.6 ±2.1` (value and its 95% interval), `†` for a partial average."""
    value = row.values.get(model)
    digits = _digits(row)
    text = _fmt(value, digits)
    ci = row.intervals.get(model)
    if value is not None and ci is not None:
        text += _ci_text(value, ci, digits)
    if _partial(row, model):
        text += "†"
    return text


def _partial(row: Row, model: str) -> bool:
    """An average over fewer tasks than another model has in the same group."""
    return row.kind in ("average", "capability") and row.values.get(model) is not None \
        and row.n_tasks.get(model, 0) < max(row.n_tasks.values(), default=0)


def _delta_text(delta: float | None, paired: PairedDelta | None, digits: int = 1) -> str:
    """`(+4.2 [+1.0, +7.3]*)`; `(+4.2)` when the models could not be paired. One decimal: points, or rating
    points for judge scores."""
    if delta is None:
        return ""
    if paired is None:
        return f"({delta:+.{digits}f})"
    mark = "*" if paired.significant else ""
    return f"({delta:+.{digits}f} [{paired.lo:+.{digits}f}, {paired.hi:+.{digits}f}]{mark})"


CONSTANT_MARK = "≡"
DETAIL_NAMES = (("mcc", "MCC"), ("f1_macro", "mF1"))


def _constant_text(row: Row, model: str) -> str:
    """` ≡` after a task cell whose model gave one answer to most items; ` ≡ fpb, fomc` after a mean's cell."""
    tasks = row.constant.get(model)
    if not tasks or row.values.get(model) is None:
        return ""
    return f" {CONSTANT_MARK}" if row.kind == "task" else f" {CONSTANT_MARK} {', '.join(tasks)}"


def _answer_name(answer: str) -> str:
    return answer if len(answer) <= 24 else answer[:23] + "…"


@dataclass
class Detail:
    """One score on the second line of a cell: `MCC 31.0 ±4.0`, `top neutral 62% ±4`."""

    name: str
    value: float
    interval: Interval | None
    digits: int
    unit: str = ""

    def text(self) -> str:
        return f"{self.name} {self.value:.{self.digits}f}{self.unit}"

    def ci(self) -> str:
        return _ci_text(self.value, self.interval, self.digits) if self.interval is not None else ""


def _details(row: Row, model: str) -> list[Detail]:
    """The second line of a task cell: MCC, macro-F1 and the most frequent answer's share, with intervals."""
    out = []
    for name, label in DETAIL_NAMES:
        value = row.detail_values.get(name, {}).get(model)
        if value is not None:
            out.append(Detail(label, value, row.details[name].get(model), 1))
    share = row.detail_values.get("top_pred_share", {}).get(model)
    if share is not None:
        top = row.top_pred.get(model)
        name = f"top {_answer_name(top)}" if top else "top"
        out.append(Detail(name, share, row.details["top_pred_share"].get(model), 0, "%"))
    return out


def _details_text(row: Row, model: str) -> str:
    """`MCC 31.0 ±4.0 · mF1 50.2 ±3.1 · top neutral 62% ±4`."""
    return " · ".join(d.text() + d.ci() for d in _details(row, model))


def _mean_metric(row: Row) -> str:
    """What a mean averages, e.g. `mean of mcc, entity_f1` (each task's score as it entered)."""
    return "mean of " + ", ".join(dict.fromkeys(row.metrics)) if row.metrics else ""


def _n_text(row: Row) -> str:
    """Items behind a task row: one number, or each model's when they differ."""
    counts = [row.n.get(m) for m in row.n if row.n.get(m) is not None]
    distinct = list(dict.fromkeys(counts))
    return "/".join(str(c) for c in distinct) if distinct else ""


# The key to a cell, short enough to read at a glance; how the intervals are computed is one line below it.
LEGEND = [
    ("57.6 ±2.1", "score x100 (judge ratings: 1-10) and its 95% interval; [lo, hi] when lopsided"),
    ("(+4.2 [+1.0, +7.3]*)", "difference to the base model, paired 95% interval; "
                             "* = significant: the interval excludes zero"),
    ("bold", "best in the row"),
    ("–", "not evaluated (n/a in the plots)"),
    ("task*", "judge-scored"),
    ("†", "average over fewer tasks than other models"),
]
# What `*` means under each multiplicity adjustment (findap report --adjust).
STAR = {
    "none": LEGEND[1][1],
    "holm": "difference to the base model, paired 95% interval; * = significant after Holm's adjustment (p ≤ 0.05)",
    "bh": "difference to the base model, paired 95% interval; * = significant after Benjamini-Hochberg (q ≤ 0.05)",
}
DETAILS_KEY = ("MCC · mF1 · top x 62%",
               "second line: MCC, macro-F1 (95% intervals), most frequent answer x and its share")
CONSTANT_KEY = (CONSTANT_MARK, f"one answer to ≥ {CONSTANT_SHARE:.0%} of items: its accuracy and F1 reflect the "
                "label mix, not skill (MCC ≈ 0)")
SUMMARY_KEY = ("average", "averages, FinCap cells and task sets take classification tasks by MCC: a constant "
               "answer adds 0")
RELATION_KEY = ("trained/similar/novel", "what the run trained on: the task's dataset / its task type / neither; "
                                          "last column: why")
RELATION_RULE = ("Trained / similar / novel, per run from its curation manifest: trained = a curated source the run "
                 "trained on is the task's dataset; similar = a curated instruction source has the task's type "
                 "(capability, domain, answer type, label set); novel = neither.",
                 "A task sits under the relation of the base model's run (else the first model's with a manifest); "
                 "where runs disagree, its last column gives each.")
METHODS = ("Intervals: Wilson for accuracy-like scores, bootstrap over items for F1, MCC, shares and ROUGE; averages "
           "average the tasks' resamples; differences: paired bootstrap over shared items. n: items per task. "
           "Details: docs/report.md.")


def legend(board: Leaderboard) -> list[tuple[str, str]]:
    """The key for this board: `*` as the adjustment in force defines it, and the skill-or-format lines where
    some row has them."""
    task_rows = [r for r in board.rows if r.kind == "task"]
    out = [LEGEND[0], (LEGEND[1][0], STAR[board.adjust])]
    if any(r.detail_values for r in task_rows):
        out.append(DETAILS_KEY)
    if any(r.detail_values.get("top_pred_share") for r in task_rows):
        out.append(CONSTANT_KEY)
    if any(r.summary is not None or r.metric == SUMMARY_METRIC for r in task_rows):
        out.append(SUMMARY_KEY)
    if board.curations:
        out.append(RELATION_KEY)
    return out + LEGEND[2:]


def relation_lines(board: Leaderboard) -> list[str]:
    """What each run's trained / similar / novel was decided from: its curation manifest and the sources it trained
    on, or, without one, the task YAMLs' tags and why."""
    lines = list(RELATION_RULE) if board.curations else []
    for c in board.curations:
        who = f"run {c['run']}" if c["run"] else "results outside a run directory"
        if not c["derived"]:
            lines.append(f"Relations of {who}: the task YAMLs' similar/novel tags ({c['why']}).")
            continue
        line = (f"Relations of {who}: from {c['manifest']}, {len(c['sources'])} curated sources trained on "
                f"({', '.join(c['sources']) or 'none'})")
        lines.append(line + ".")
        if c["untyped_it_sources"]:
            lines.append(f"Instruction sources of {who} on no FinEval task's dataset have no task type and make no "
                         f"task similar: {', '.join(c['untyped_it_sources'])}.")
    return lines


def _relation_text(board: Leaderboard, row: Row) -> str:
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


def comparisons_lines(board: Leaderboard) -> list[str]:
    """How many paired tests the report made and how its marks control for their number."""
    if not board.base:
        return []
    counts = board.comparisons
    total = counts.get("total", 0)
    if not total:
        return ["Comparisons: none (no result could be paired item by item with the base model)."]
    parts = ", ".join(f"{counts[name]} {name if counts[name] > 1 else name[:-1]}" for name, _, _ in COMPARISON_TABLES
                      if counts.get(name))
    lines = [f"Comparisons: {total} paired tests against {board.base} ({parts}; a test shown twice counts once)."]
    if board.adjust == "none":
        lines.append(f"Marks: each test's own 95% interval, not adjusted for multiplicity (--adjust none): about "
                     f"{ALPHA * total:.2g} false marks are expected where nothing changed; --adjust holm or bh "
                     "controls that.")
        return lines
    if board.adjust == "holm":
        mark = (f"Marks: Holm-adjusted p ≤ {ALPHA} over all {total} tests (--adjust holm): at most a 5% chance of "
                "any false mark.")
    else:
        mark = (f"Marks: Benjamini-Hochberg adjusted p ≤ {ALPHA} over all {total} tests (--adjust bh): at most 5% "
                "of the marks expected to be false.")
    floor = smallest_p_value(board.n_boot)
    if floor > ALPHA / total:
        mark += (f" With {board.n_boot} resamples no p-value is below {floor:.4f} > {ALPHA}/{total}: a single "
                 f"difference needs n_boot ≥ {int(2 * total / ALPHA)} to pass.")
    return lines + [mark]


# ---------------------------------------------------------------------------------------------------------------
# Markdown
# ---------------------------------------------------------------------------------------------------------------


def _md_cell(board: Leaderboard, row: Row, model: str, bold: bool) -> str:
    text = _value_text(row, model)
    delta = _delta_text(board.delta(row, model), row.paired.get(model))
    if delta:
        text += f" {delta}"
    text = (f"**{text}**" if bold else text) + _constant_text(row, model)
    details = _details_text(row, model)
    if details:
        text += "<br>" + details.replace("|", "\\|")
    return text


def _has_relations(board: Leaderboard) -> bool:
    """Task tables get the relation column when some run's relations were derived from its curation; with none,
    every task keeps its YAML tag and the lines above the tables say so once."""
    return any(c.get("derived") for c in board.curations) and any(r.relations for r in board.rows)


def _md_table(board: Leaderboard, rows: list[Row]) -> list[str]:
    relation = _has_relations(board)
    lines = ["| group | task | metric | " + " | ".join(board.models) + " | n |" + (" relation |" if relation else ""),
             "|---|---|---|" + "---|" * len(board.models) + "---|" + ("---|" if relation else "")]
    last_group = None
    for row in rows:
        group = _group_title(row)
        shown = group if group != last_group else ""
        last_group = group
        best = _best(row)
        label = f"*{row.label}*" if row.kind == "average" else row.label + ("\\*" if row.judged else "")
        cells = [_md_cell(board, row, m, m in best) for m in board.models]
        metric = row.metric if row.kind == "task" else _mean_metric(row)
        why = " " + _relation_text(board, row).replace("|", "\\|") + " |" if relation else ""
        lines.append(f"| {shown} | {label} | {metric} | " + " | ".join(cells) + f" | {_n_text(row)} |{why}")
    return lines


CAPABILITY_NOTE = ("Each cell is the mean of its tasks' scores (the task rows of the tables below; classification "
                   "tasks by MCC, so a constant answer adds 0), with the 95% interval of that mean and the paired "
                   "difference to the base model on the same scores; ≡ names tasks where the model gave one answer "
                   "to most items.")


def _md_capability_table(board: Leaderboard, rows: list[Row]) -> list[str]:
    lines = ["| capability | domain | novelty | " + " | ".join(board.models) + " | tasks |",
             "|---|---|---|" + "---|" * len(board.models) + "---|"]
    last = None
    for row in rows:
        capability = CAPABILITY_TITLE.get(row.capability, row.capability)
        best = _best(row)
        cells = [_md_cell(board, row, m, m in best) for m in board.models]
        lines.append(f"| {capability if capability != last else ''} | {row.domain} | {row.novelty} | "
                     + " | ".join(cells) + f" | {', '.join(row.tasks)} |")
        last = capability
    return lines


TASK_SET_NOTE = ("Each named set (eval.task_sets, findap report --task-set) is the mean of its tasks' scores "
                 "(classification tasks by MCC), with the 95% interval of that mean and the paired difference to "
                 "the base model on the same scores.")


def _md_task_set_table(board: Leaderboard, rows: list[Row]) -> list[str]:
    lines = ["| task set | " + " | ".join(board.models) + " | tasks |", "|---|" + "---|" * len(board.models) + "---|"]
    for row in rows:
        best = _best(row)
        cells = [_md_cell(board, row, m, m in best) for m in board.models]
        lines.append(f"| {row.label} | " + " | ".join(cells) + f" | {', '.join(row.tasks)} |")
    return lines


def _md_significance_summary(board: Leaderboard) -> list[str]:
    if not board.base:
        return []
    lines = []
    for m in board.models[1:]:
        tasks = [r for r in board.rows if r.kind == "task" and r.paired.get(m) is not None]
        ups = [r.label + _constant_text(r, m) for r in tasks if r.paired[m].significant and r.paired[m].delta > 0]
        downs = [r.label + _constant_text(r, m) for r in tasks if r.paired[m].significant and r.paired[m].delta < 0]
        lines.append(f"- **{m}** vs {board.base}: {len(tasks)} tasks paired; significantly better on "
                     f"{', '.join(ups) or 'none'}; significantly worse on {', '.join(downs) or 'none'}.")
    return lines + [""]


def render_markdown(board: Leaderboard, costs: list[StageCost], plots: dict[str, str], title: str,
                    notes: Sequence[CurationNote] = ()) -> str:
    lines = [f"# {title}", ""]
    if board.base:
        lines += [f"Base model: **{board.base}**.", ""]
    lines += [f"- `{key}`: {text}" for key, text in legend(board)] + ["", METHODS, ""]
    lines += [line for text in comparisons_lines(board) for line in (text, "")]
    lines += [line for text in relation_lines(board) for line in (text, "")]
    lines += _md_significance_summary(board)
    for split in dict.fromkeys(r.split for r in board.capabilities):
        lines += [f"## FinCap capabilities - {split}", "", CAPABILITY_NOTE, ""]
        lines += _md_capability_table(board, [r for r in board.capabilities if r.split == split]) + [""]
    for split in dict.fromkeys(r.split for r in board.task_sets):
        lines += [f"## Task sets - {split}", "", TASK_SET_NOTE, ""]
        lines += _md_task_set_table(board, [r for r in board.task_sets if r.split == split]) + [""]
    for split, novelty, rows in _sections(board):
        lines += [f"## {split.capitalize()} - {novelty}", ""] + _md_table(board, rows) + [""]
    judged = [r for r in board.rows if r.judged and r.parse_failure_rate]
    if judged:
        lines += ["### Judge parse failures", "", "| task | " + " | ".join(board.models) + " |",
                  "|---|" + "---|" * len(board.models)]
        for r in judged:
            cells = [_fmt(100 * r.parse_failure_rate[m], 1) + "%" if m in r.parse_failure_rate else "–"
                     for m in board.models]
            lines.append(f"| {r.label} | " + " | ".join(cells) + " |")
        lines.append("")
    if notes:
        lines += ["## Decontamination", ""] + [f"- **{n.run}**: {n.note}" for n in notes] + [""]
    if costs:
        lines += ["## Cost", "", "| run | stage | done | wall time (s) | tokens | tokens/s | peak RSS (GB) |",
                  "|---|---|---|---|---|---|---|"]
        for c in costs:
            lines.append(f"| {c.run} | {c.stage} | {'yes' if c.done else 'no'} | {_fmt(c.wall_s)} | "
                         f"{_fmt_count(c.tokens)} | {_fmt_count(c.tokens_per_s)} | {_fmt(c.peak_rss_gb, 2)} |")
        lines.append("")
    if plots:
        lines += ["## Plots", ""]
        for name, rel in plots.items():
            lines += [f"![{name}]({rel})", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------------------

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


def _html_delta(delta: float | None, paired: PairedDelta | None) -> str:
    """Green/red only for significant differences; the rest grey, so noise does not read as a result."""
    if delta is None:
        return ""
    text = html.escape(_delta_text(delta, paired))
    if paired is None:
        cls = "up" if delta > 0 else "down" if delta < 0 else ""
    elif paired.significant:
        cls = ("up" if delta > 0 else "down") + " sig"
    else:
        cls = "ns"
    adjusted = f", {paired.adjust}-adjusted p = {paired.p_adjusted:.3f}" if paired and paired.p_adjusted is not None \
        else ""
    title = f" title='paired bootstrap p = {paired.p_value:.3f}{adjusted}, n = {paired.n}'" if paired else ""
    return f' <span class="{cls}"{title}>{text}</span>'


def _html_value(row: Row, model: str) -> str:
    value = row.values.get(model)
    digits = _digits(row)
    text = _fmt(value, digits)
    ci = row.intervals.get(model)
    if value is not None and ci is not None:
        text += (f" <span class='ci' title='95% interval [{ci.lo:.{digits}f}, {ci.hi:.{digits}f}], {ci.method}, "
                 f"n = {ci.n}'>{html.escape(_ci_text(value, ci, digits).strip())}</span>")
    if _partial(row, model):
        text += "†"
    return text


def _html_constant(row: Row, model: str) -> str:
    mark = _constant_text(row, model)
    if not mark:
        return ""
    if row.kind == "task":
        top, share = row.top_pred.get(model), row.detail_values.get("top_pred_share", {}).get(model)
        what = f"one answer ({top}) to {share:.0f}% of items" if top and share is not None \
            else "one answer to most items"
    else:
        what = "one answer to most items of " + ", ".join(row.constant[model])
    return f" <span class='const' title='{html.escape(what, quote=True)}'>{html.escape(mark.strip())}</span>"


def _html_details(row: Row, model: str) -> str:
    parts = [html.escape(d.text()) + (f" <span class='ci'>{html.escape(d.ci().strip())}</span>" if d.ci() else "")
             for d in _details(row, model)]
    return f"<div class='det'>{' · '.join(parts)}</div>" if parts else ""


def _png_width(png: bytes) -> int:
    """Pixel width from the PNG header (IHDR holds width at bytes 16-20, big-endian)."""
    return int.from_bytes(png[16:20], "big")


def _html_table(board: Leaderboard, rows: list[Row]) -> list[str]:
    esc = html.escape
    relation = _has_relations(board)
    out = ["<table><tr><th class='l'>group</th><th class='l'>task</th><th class='l'>metric</th>"
           + "".join(f"<th>{esc(m)}</th>" for m in board.models) + "<th>n</th>"
           + ("<th class='l'>relation</th>" if relation else "") + "</tr>"]
    last_group = None
    for row in rows:
        group = _group_title(row)
        shown = esc(group) if group != last_group else ""
        last_group = group
        label = esc(row.label) + ("*" if row.judged and row.kind == "task" else "")
        tr = " class='avg'" if row.kind == "average" else ""
        out.append(f"<tr{tr}><td class='l'>{shown}</td><td class='l'>{label}</td>"
                   f"<td class='l'>{esc(row.metric if row.kind == 'task' else _mean_metric(row))}</td>"
                   f"{_html_cells(board, row)}"
                   f"<td>{esc(_n_text(row))}</td>"
                   + (f"<td class='rel'>{esc(_relation_text(board, row))}</td>" if relation else "") + "</tr>")
    out.append("</table>")
    return out


def _html_cells(board: Leaderboard, row: Row) -> str:
    best = _best(row)
    bold = " class='best'"
    return "".join(f"<td{bold if m in best else ''}>{_html_value(row, m)}"
                   f"{_html_delta(board.delta(row, m), row.paired.get(m))}{_html_constant(row, m)}"
                   f"{_html_details(row, m)}</td>" for m in board.models)


def _html_capability_table(board: Leaderboard, rows: list[Row]) -> list[str]:
    esc = html.escape
    out = ["<table><tr><th class='l'>capability</th><th class='l'>domain</th><th class='l'>novelty</th>"
           + "".join(f"<th>{esc(m)}</th>" for m in board.models) + "<th class='l'>tasks</th></tr>"]
    last = None
    for row in rows:
        capability = CAPABILITY_TITLE.get(row.capability, row.capability)
        out.append(f"<tr><td class='l'>{esc(capability) if capability != last else ''}</td>"
                   f"<td class='l'>{esc(row.domain)}</td><td class='l'>{esc(row.novelty)}</td>"
                   f"{_html_cells(board, row)}<td class='tasks'>{esc(', '.join(row.tasks))}</td></tr>")
        last = capability
    out.append("</table>")
    return out


def _html_task_set_table(board: Leaderboard, rows: list[Row]) -> list[str]:
    esc = html.escape
    out = ["<table><tr><th class='l'>task set</th>" + "".join(f"<th>{esc(m)}</th>" for m in board.models)
           + "<th class='l'>tasks</th></tr>"]
    out += [f"<tr><td class='l'>{esc(row.label)}</td>{_html_cells(board, row)}"
            f"<td class='tasks'>{esc(', '.join(row.tasks))}</td></tr>" for row in rows]
    return out + ["</table>"]


def _html_significance_summary(board: Leaderboard) -> list[str]:
    items = [line[2:] for line in _md_significance_summary(board) if line.startswith("- ")]
    return ["<ul class='legend'>" + "".join(f"<li>{html.escape(i).replace('**', '')}</li>" for i in items)
            + "</ul>"] if items else []


def render_html(board: Leaderboard, costs: list[StageCost], images: dict[str, bytes], title: str,
                notes: Sequence[CurationNote] = ()) -> str:
    esc = html.escape
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
    out += _html_significance_summary(board)
    for split in dict.fromkeys(r.split for r in board.capabilities):
        out.append(f"<h2>FinCap capabilities - {esc(split)}</h2><p class='note'>{esc(CAPABILITY_NOTE)}</p>")
        out += _html_capability_table(board, [r for r in board.capabilities if r.split == split])
    for split in dict.fromkeys(r.split for r in board.task_sets):
        out.append(f"<h2>Task sets - {esc(split)}</h2><p class='note'>{esc(TASK_SET_NOTE)}</p>")
        out += _html_task_set_table(board, [r for r in board.task_sets if r.split == split])
    for split, novelty, rows in _sections(board):
        out.append(f"<h2>{esc(split.capitalize())} - {esc(novelty)}</h2>")
        out += _html_table(board, rows)
    judged = [r for r in board.rows if r.judged and r.parse_failure_rate]
    if judged:
        out.append("<h2>Judge parse failures</h2><table><tr><th class='l'>task</th>"
                   + "".join(f"<th>{esc(m)}</th>" for m in board.models) + "</tr>")
        for r in judged:
            cells = "".join(f"<td>{_fmt(100 * r.parse_failure_rate[m])}%</td>" if m in r.parse_failure_rate
                            else "<td>–</td>" for m in board.models)
            out.append(f"<tr><td class='l'>{esc(r.label)}</td>{cells}</tr>")
        out.append("</table>")
    if notes:
        out.append("<h2>Decontamination</h2><ul>"
                   + "".join(f"<li><b>{esc(n.run)}</b>: {esc(n.note)}</li>" for n in notes) + "</ul>")
    if costs:
        out.append("<h2>Cost</h2><table><tr><th class='l'>run</th><th class='l'>stage</th><th>done</th>"
                   "<th>wall time (s)</th><th>tokens</th><th>tokens/s</th><th>peak RSS (GB)</th></tr>")
        for c in costs:
            out.append(f"<tr><td class='l'>{esc(c.run)}</td><td class='l'>{esc(c.stage)}</td>"
                       f"<td>{'yes' if c.done else 'no'}</td><td>{_fmt(c.wall_s)}</td>"
                       f"<td>{_fmt_count(c.tokens)}</td><td>{_fmt_count(c.tokens_per_s)}</td>"
                       f"<td>{_fmt(c.peak_rss_gb, 2)}</td></tr>")
        out.append("</table>")
    if images:
        out.append("<h2>Plots</h2><div class='plots'>")
        for name, png in images.items():
            data = base64.b64encode(png).decode("ascii")
            wide = " class='wide'" if _png_width(png) > 800 else ""  # wide charts take a whole row
            out.append(f"<figure{wide}><img alt='{esc(name)}' src='data:image/png;base64,{data}'></figure>")
        out.append("</div>")
    out.append("</body></html>")
    return "\n".join(out)
