"""Reports: a leaderboard in the paper's Table 6 layout, deltas vs a base model, a cost table and plots.

`build_report(inputs, out_dir, base=None)` reads run directories, eval output directories or single result JSON
files and writes, into `out_dir`:

    report.md          leaderboard + deltas + cost table, plots linked from plots/
    report.html        the same, self-contained: inline CSS, plots embedded as base64 PNG, no external URL
    leaderboard.json   the numbers behind the tables (rows, group averages, deltas, costs)
    plots/*.png        grouped bars per capability (one bar per model), training-loss curves

Layout of the leaderboard (Table 6 of Ke et al. 2025): split role (unseen first), then similar vs novel, then
capability (concept, task, reasoning, IF/chat), then domain (finance, general, math); one row per task and answer
mode, one column per model, and an average row closing each capability x domain group. Cells show the task's
primary metric; fractions are shown x100 (the paper's percentages), judge scores on their own 1-10 scale.

A result JSON is recognised by having `task` and a `scores` dict (the eval runner's per-task files); every other
JSON under an input directory is ignored.
"""
from __future__ import annotations

import base64
import html
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from findap.io import DataError, read_jsonl_tolerant, write_bytes, write_json, write_text

SPLIT_ORDER = ("unseen", "dev")
NOVELTY_ORDER = ("similar", "novel")
CAPABILITY_ORDER = ("concept", "task", "reasoning", "chat")
DOMAIN_ORDER = ("finance", "general", "math")
CAPABILITY_TITLE = {"concept": "Concept", "task": "Task", "reasoning": "Reasoning", "chat": "IF/Chat"}

# Which score is a task's headline number when the result does not name one (first present wins).
PRIMARY_METRICS = (
    "acc", "accuracy", "f1_weighted", "weighted_f1", "entity_f1", "f1_entity", "f1", "f1_macro", "macro_f1",
    "mcc", "rouge1", "rouge_1", "rougeL", "em", "exact_match", "numeracy_f1", "score",
)
# Judge ratings stay on their 1-10 scale; every other metric is a fraction shown as a percentage.
RAW_SCALE_METRICS = {"score"}
BOOKKEEPING = {"n", "missing", "n_judged", "n_parse_failures", "judge_attempts", "n_samples", "parse_failure_rate",
               "missing_rate"}


# ---------------------------------------------------------------------------------------------------------------
# Reading results
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class TaskResult:
    """One model's result on one task in one answer mode, as read from a per-task result JSON."""

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

    @property
    def scale(self) -> float:
        return 1.0 if self.metric in RAW_SCALE_METRICS or self.metric.startswith("score_") else 100.0

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


# The headline metric per answer type when a task declares no metric list (FinBen's choices: weighted F1 for
# classification, entity F1 for NER; MT-bench's mean rating; accuracy elsewhere).
PRIMARY_BY_ANSWER_TYPE = {
    "multiple_choice": ("acc",),
    "classification": ("f1_weighted", "acc"),
    "ner": ("entity_f1",),
    "summarization": ("rouge1", "rougeL"),
    "numeric_qa": ("tatqa_em", "numeric_acc", "exact_match"),
    "judge": ("score", "accuracy"),
}


def primary_metric(scores: dict, declared: str | None, answer_type: str | None = None,
                   declared_metrics: Sequence[str] = ()) -> str | None:
    """The metric a task's cell shows: named by the result (`primary_metric`), else the answer type's usual
    headline, else the first output of the task's own metric list, else a well-known name, else the first number."""

    def usable(name: str) -> bool:
        # None is kept: a judge task where no verdict parsed has score None and still gets a row ("–").
        value = scores.get(name, False)
        return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))

    if declared and declared in scores:
        return declared
    for name in PRIMARY_BY_ANSWER_TYPE.get(answer_type or "", ()):
        if name in scores and usable(name):
            return name
    if declared_metrics:  # a custom metric list: its first output is the task author's headline
        first = next((n for n in scores if n not in BOOKKEEPING and usable(n)), None)
        if first:
            return first
    for name in PRIMARY_METRICS:
        if name in scores and usable(name):
            return name
    return next((n for n in scores if n not in BOOKKEEPING and usable(n)), None)


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
    metric = primary_metric(scores, _first(record, "primary_metric", "metric"), _first(flat, "answer_type"),
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
# The leaderboard
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Row:
    """A table row: one task (kind='task') or a group average (kind='average'); values[model] is displayed."""

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


@dataclass
class Leaderboard:
    models: list[str]
    rows: list[Row]
    base: str | None = None

    def delta(self, row: Row, model: str) -> float | None:
        if self.base is None or model == self.base:
            return None
        a, b = row.values.get(model), row.values.get(self.base)
        return None if a is None or b is None else a - b

    def to_dict(self) -> dict:
        rows = []
        for r in self.rows:
            d = asdict(r)
            d["deltas"] = {m: self.delta(r, m) for m in self.models if self.base and m != self.base}
            rows.append(d)
        return {"models": self.models, "base": self.base, "rows": rows}


def _order(value: str, order: Sequence[str]) -> int:
    return order.index(value) if value in order else len(order)


def _row_label(task: str, mode: str) -> str:
    return task if mode == "direct" else f"{task} ({mode})"


def build_leaderboard(results: Sequence[TaskResult], base: str | None = None) -> Leaderboard:
    """Task rows in Table 6 order with an average row after each split/novelty/capability/domain group.

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
    group: list[Row] = []
    for key in sorted(by_key, key=sort_key):
        split, novelty, capability, domain, task, mode = key
        if group and (group[0].split, group[0].novelty, group[0].capability, group[0].domain) != key[:4]:
            rows += _close_group(group, models)
            group = []
        cells = by_key[key]
        any_result = next(iter(cells.values()))
        group.append(Row(
            kind="task", label=_row_label(task, mode), split=split, novelty=novelty, capability=capability,
            domain=domain, metric=any_result.metric, judged=any(c.judged for c in cells.values()),
            values={m: cells[m].value if m in cells else None for m in models},
            parse_failure_rate={m: c.scores["parse_failure_rate"] for m, c in cells.items() if c.judged},
        ))
    if group:
        rows += _close_group(group, models)
    return Leaderboard(models=models, rows=rows, base=base)


def _close_group(group: list[Row], models: list[str]) -> list[Row]:
    """The group's rows plus its average row; a one-task group gets none (it would repeat the task row)."""
    return group + [_average_row(group, models)] if len(group) > 1 else group


def _average_row(group: list[Row], models: list[str]) -> Row:
    """Mean of the group's percentage rows; a group of judge ratings only (MT-bench) averages the ratings.

    Mixing a 1-10 rating into a mean of percentages would make the number meaningless, so it is left out.
    """
    first = group[0]
    percent = [r for r in group if r.metric not in RAW_SCALE_METRICS]
    averaged = percent or group
    values, counts = {}, {}
    for m in models:
        present = [r.values[m] for r in averaged if r.values.get(m) is not None]
        values[m] = sum(present) / len(present) if present else None
        counts[m] = len(present)
    return Row(kind="average", label="average", split=first.split, novelty=first.novelty,
               capability=first.capability, domain=first.domain, values=values, n_tasks=counts,
               metric="" if percent else averaged[0].metric)


# ---------------------------------------------------------------------------------------------------------------
# Costs and training curves from run directories
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
    """Wall time and tokens per stage: the DONE summary first, then the last metrics.jsonl record."""
    costs = []
    for d in _stage_dirs(inputs):
        done = _read_json_file(d / "DONE") if (d / "DONE").exists() else {}
        metrics = read_jsonl_tolerant(d / "metrics.jsonl")
        last = metrics[-1] if metrics else {}
        wall = _number(done, ("wall_s", "wall_time_s", "elapsed_s")) or _number(last, ("time", "wall_s"))
        tokens = _number(done, TOKEN_KEYS)
        if tokens is None:
            tokens = _number(last, TOKEN_KEYS)
        costs.append(StageCost(run=d.parent.name, stage=d.name, done=bool(done), wall_s=wall, tokens=tokens))
    return costs


@dataclass
class LossCurve:
    run: str
    stage: str
    steps: list[float]
    loss: list[float]
    dev_steps: list[float]
    dev_loss: list[float]


def loss_curves(inputs: Iterable[str | Path]) -> list[LossCurve]:
    """Training (and development) loss against step from every stage's metrics.jsonl that logs a loss."""
    curves = []
    for d in _stage_dirs(inputs):
        rows = read_jsonl_tolerant(d / "metrics.jsonl")
        steps, loss, dev_steps, dev_loss = [], [], [], []
        for i, row in enumerate(rows):
            step = _number(row, ("step", "global_step", "optimizer_step"))
            step = float(i) if step is None else step
            if (v := _number(row, LOSS_KEYS)) is not None:
                steps.append(step)
                loss.append(v)
            if (v := _number(row, DEV_LOSS_KEYS)) is not None:
                dev_steps.append(step)
                dev_loss.append(v)
        if loss or dev_loss:
            curves.append(LossCurve(d.parent.name, d.name, steps, loss, dev_steps, dev_loss))
    return curves


# ---------------------------------------------------------------------------------------------------------------
# Plots (matplotlib's object API with the Agg canvas: no pyplot global state, no display needed)
# ---------------------------------------------------------------------------------------------------------------

PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")


def _png(fig) -> bytes:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def capability_bars(board: Leaderboard, split: str, capability: str) -> bytes | None:
    """Grouped bars (one group per task row, one bar per model) for one split x capability: Figures 2-9 style."""
    from matplotlib.figure import Figure

    rows = [r for r in board.rows if r.kind == "task" and r.split == split and r.capability == capability]
    if not rows:
        return None
    n_models = len(board.models)
    width = 0.8 / n_models
    # Width grows with the number of bars up to a page's width; past that the bars get thinner instead.
    fig = Figure(figsize=(min(12.0, max(4.5, 1.5 + 0.3 * len(rows) * (n_models + 1))), 3.8))
    ax = fig.add_subplot()
    ax.set_xlim(-0.6, len(rows) - 0.4)
    for k, model in enumerate(board.models):
        xs = [i + (k - (n_models - 1) / 2) * width for i in range(len(rows))]
        ys = [r.values.get(model) for r in rows]
        ax.bar([x for x, y in zip(xs, ys) if y is not None], [y for y in ys if y is not None], width,
               label=model, color=PALETTE[k % len(PALETTE)])
    ax.set_xticks(range(len(rows)))
    crowded = len(rows) * n_models > 18
    # Crowded axes get bare task names (the tables carry domain and novelty); two-line rotated labels collide.
    labels = [r.label if crowded else f"{r.label}\n({r.domain}, {r.novelty})" for r in rows]
    ax.set_xticklabels(labels, fontsize=7 if crowded else 8,
                       rotation=35 if crowded else 0, ha="right" if crowded else "center",
                       rotation_mode="anchor")
    judged_only = all(r.metric in RAW_SCALE_METRICS for r in rows)
    ax.set_ylabel("judge score (1-10)" if judged_only else "score (x100)")
    ax.set_title(f"{CAPABILITY_TITLE.get(capability, capability)} ({split})")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


def loss_plot(curves: Sequence[LossCurve]) -> bytes:
    """Loss against step for one stage, every run overlaid: train solid, dev dashed with markers."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 3.4))
    ax = fig.add_subplot()
    for k, curve in enumerate(curves):
        color = PALETTE[k % len(PALETTE)]
        if curve.loss:
            ax.plot(curve.steps, curve.loss, color=color, linewidth=1.2, label=f"{curve.run} train")
        if curve.dev_loss:
            ax.plot(curve.dev_steps, curve.dev_loss, color=color, linestyle="--", marker="o", markersize=3,
                    linewidth=1.2, label=f"{curve.run} dev")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(f"{curves[0].stage} loss")
    ax.grid(alpha=0.3)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.legend(fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return _png(fig)


# ---------------------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------------------


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _fmt_count(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def _fmt_delta(value: float | None) -> str:
    return "" if value is None else f"{value:+.1f}"


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


def _cell_text(board: Leaderboard, row: Row, model: str, bold: bool) -> str:
    text = _fmt(row.values.get(model), _digits(row))
    if row.kind == "average" and row.n_tasks.get(model, 0) < max(row.n_tasks.values(), default=0) \
            and row.values.get(model) is not None:
        text += "†"
    delta = board.delta(row, model)
    if delta is not None:
        text += f" ({_fmt_delta(delta)})"
    return f"**{text}**" if bold else text


def _group_title(row: Row) -> str:
    return f"{CAPABILITY_TITLE.get(row.capability, row.capability)} / {row.domain}"


def render_markdown(board: Leaderboard, costs: list[StageCost], plots: dict[str, str], title: str) -> str:
    lines = [f"# {title}", ""]
    if board.base:
        lines += [f"Base model: **{board.base}**; other columns show `value (delta vs base)`.", ""]
    lines += ["Values are the task's primary metric x100 (judge ratings on their 1-10 scale). Best per row in "
              "bold. `*` judge-scored; `†` average over fewer tasks than other models. See docs/report.md.", ""]
    header = "| group | task | metric | " + " | ".join(board.models) + " |"
    rule = "|---|---|---|" + "---|" * len(board.models)
    for split, novelty, rows in _sections(board):
        lines += [f"## {split.capitalize()} - {novelty}", "", header, rule]
        last_group = None
        for row in rows:
            group = _group_title(row)
            shown = group if group != last_group else ""
            last_group = group
            best = _best(row)
            label = f"*{row.label}*" if row.kind == "average" else row.label + ("\\*" if row.judged else "")
            cells = [_cell_text(board, row, m, m in best) for m in board.models]
            metric = row.metric if row.kind == "task" else ""
            lines.append(f"| {shown} | {label} | {metric} | " + " | ".join(cells) + " |")
        lines.append("")
    judged = [r for r in board.rows if r.judged and r.parse_failure_rate]
    if judged:
        lines += ["### Judge parse failures", "", "| task | " + " | ".join(board.models) + " |",
                  "|---|" + "---|" * len(board.models)]
        for r in judged:
            cells = [_fmt(100 * r.parse_failure_rate[m], 1) + "%" if m in r.parse_failure_rate else "–"
                     for m in board.models]
            lines.append(f"| {r.label} | " + " | ".join(cells) + " |")
        lines.append("")
    if costs:
        lines += ["## Cost", "", "| run | stage | done | wall time (s) | tokens | tokens/s |", "|---|---|---|---|---|---|"]
        for c in costs:
            lines.append(f"| {c.run} | {c.stage} | {'yes' if c.done else 'no'} | {_fmt(c.wall_s)} | "
                         f"{_fmt_count(c.tokens)} | {_fmt_count(c.tokens_per_s)} |")
        lines.append("")
    if plots:
        lines += ["## Plots", ""]
        for name, rel in plots.items():
            lines += [f"![{name}]({rel})", ""]
    return "\n".join(lines)


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1200px;color:#222;
 padding:0 1rem}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-bottom:1px solid #ddd;padding-bottom:.2rem}
table{border-collapse:collapse;margin:.5rem 0 1rem;font-size:.9rem}
th,td{border:1px solid #ddd;padding:.3rem .6rem;text-align:right;white-space:nowrap}
th{background:#f3f5f8}td.l,th.l{text-align:left}
tr.avg td{background:#f7f7f2;font-style:italic}
td.best{font-weight:700}
.up{color:#1a7f37}.down{color:#b42318}.note{color:#555;font-size:.85rem}
.plots{display:grid;grid-template-columns:repeat(auto-fill,minmax(520px,1fr));gap:1rem;align-items:start}
.plots figure{margin:0}.plots figure.wide{grid-column:1/-1}
.plots img{max-width:100%;border:1px solid #eee}
"""


def _html_delta(delta: float | None) -> str:
    if delta is None:
        return ""
    cls = "up" if delta > 0 else "down" if delta < 0 else ""
    return f' <span class="{cls}">({_fmt_delta(delta)})</span>'


def _png_width(png: bytes) -> int:
    """Pixel width from the PNG header (IHDR holds width at bytes 16-20, big-endian)."""
    return int.from_bytes(png[16:20], "big")


def render_html(board: Leaderboard, costs: list[StageCost], images: dict[str, bytes], title: str) -> str:
    esc = html.escape
    out = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{esc(title)}</title>",
           f"<style>{CSS}</style></head><body><h1>{esc(title)}</h1>"]
    note = ("Values are each task's primary metric x100 (judge ratings on their 1-10 scale). Best per row in bold."
            " * judge-scored; † average over fewer tasks than other models.")
    if board.base:
        note += f" Deltas in brackets are against the base model <b>{esc(board.base)}</b>."
    out.append(f"<p class='note'>{note}</p>")
    for split, novelty, rows in _sections(board):
        out.append(f"<h2>{esc(split.capitalize())} - {esc(novelty)}</h2><table><tr><th class='l'>group</th>"
                   "<th class='l'>task</th><th class='l'>metric</th>"
                   + "".join(f"<th>{esc(m)}</th>" for m in board.models) + "</tr>")
        last_group = None
        for row in rows:
            group = _group_title(row)
            shown = esc(group) if group != last_group else ""
            last_group = group
            best = _best(row)
            label = esc(row.label) + ("*" if row.judged and row.kind == "task" else "")
            cells = []
            for m in board.models:
                value = _fmt(row.values.get(m), _digits(row))
                if row.kind == "average" and row.values.get(m) is not None \
                        and row.n_tasks.get(m, 0) < max(row.n_tasks.values(), default=0):
                    value += "†"
                cls = " class='best'" if m in best else ""
                cells.append(f"<td{cls}>{value}{_html_delta(board.delta(row, m))}</td>")
            tr = " class='avg'" if row.kind == "average" else ""
            out.append(f"<tr{tr}><td class='l'>{shown}</td><td class='l'>{label}</td>"
                       f"<td class='l'>{esc(row.metric if row.kind == 'task' else '')}</td>{''.join(cells)}</tr>")
        out.append("</table>")
    judged = [r for r in board.rows if r.judged and r.parse_failure_rate]
    if judged:
        out.append("<h2>Judge parse failures</h2><table><tr><th class='l'>task</th>"
                   + "".join(f"<th>{esc(m)}</th>" for m in board.models) + "</tr>")
        for r in judged:
            cells = "".join(f"<td>{_fmt(100 * r.parse_failure_rate[m])}%</td>" if m in r.parse_failure_rate
                            else "<td>–</td>" for m in board.models)
            out.append(f"<tr><td class='l'>{esc(r.label)}</td>{cells}</tr>")
        out.append("</table>")
    if costs:
        out.append("<h2>Cost</h2><table><tr><th class='l'>run</th><th class='l'>stage</th><th>done</th>"
                   "<th>wall time (s)</th><th>tokens</th><th>tokens/s</th></tr>")
        for c in costs:
            out.append(f"<tr><td class='l'>{esc(c.run)}</td><td class='l'>{esc(c.stage)}</td>"
                       f"<td>{'yes' if c.done else 'no'}</td><td>{_fmt(c.wall_s)}</td>"
                       f"<td>{_fmt_count(c.tokens)}</td><td>{_fmt_count(c.tokens_per_s)}</td></tr>")
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


# ---------------------------------------------------------------------------------------------------------------
# Entry point
# ---------------------------------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def build_report(
    inputs: Sequence[str | Path], out_dir: str | Path, base: str | None = None, title: str = "findap report"
) -> dict[str, str | list[str]]:
    """Read results and run logs under `inputs`, write the report files into `out_dir`, return their paths.

    `base` is a model label (as shown in the results) or an input path whose results all share one label;
    every other model's cells then carry a delta against it.
    """
    inputs = [Path(p) for p in inputs]
    if base is not None and Path(base).exists() and not any(_is_under(Path(base), p) for p in inputs):
        inputs.append(Path(base))  # a base run given by path is read even when not listed among the inputs
    results = load_results(inputs)
    if not results:
        raise ValueError(f"no task results (JSON with 'task' and 'scores') under {[str(p) for p in inputs]}")
    base_label = _resolve_base(base, results)
    board = build_leaderboard(results, base=base_label)
    costs = stage_costs(inputs)
    curves = loss_curves(inputs)

    out = Path(out_dir)
    images: dict[str, bytes] = {}
    for split in SPLIT_ORDER:
        for capability in CAPABILITY_ORDER:
            png = capability_bars(board, split, capability)
            if png is not None:
                images[f"{split}_{capability}"] = png
    by_stage: dict[str, list[LossCurve]] = {}
    for curve in curves:
        by_stage.setdefault(curve.stage, []).append(curve)
    for stage, stage_curves in by_stage.items():
        images[f"loss_{_slug(stage)}"] = loss_plot(stage_curves)
    plot_paths = {name: write_bytes(out / "plots" / f"{name}.png", png) for name, png in images.items()}

    md = render_markdown(board, costs, {n: f"plots/{p.name}" for n, p in plot_paths.items()}, title)
    page = render_html(board, costs, images, title)
    data = {**board.to_dict(), "costs": [{**asdict(c), "tokens_per_s": c.tokens_per_s} for c in costs],
            "results": [asdict(r) for r in results]}
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


def report_stage(recipe, ctx) -> dict:
    """The `report` stage of `findap run`: a report over the whole run directory, written into the stage directory.

    Deltas are taken against the model labelled "base" when the run evaluated it (the pipeline's label for the
    recipe's starting model), so a run that skipped the base evaluation still gets its report.
    """
    labels = {r.model for r in load_results([recipe.run_dir])}
    base = "base" if "base" in labels else None
    paths = build_report([recipe.run_dir], ctx.dir, base=base, title=f"findap report: {recipe.name}")
    return {"models": sorted(labels), "base": base, "outputs": paths}
