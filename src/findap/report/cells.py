"""What one score cell of a report table says, in one notation for every page format:

    57.6 ±2.1 (+4.2 [+1.0, +7.3]*)

the value, the half-width of its 95% interval (`[lo, hi]` instead when the interval is far from symmetric), and
against the base model the paired difference with its 95% interval; `*` marks a difference whose interval excludes
zero (with a multiplicity adjustment, holm or bh: whose adjusted p-value is at most 5% as well). Deltas without
brackets could not be paired (a result file without per-item samples).

Classification and multiple-choice cells add a second line, `MCC 31.0 ±4.0 · mF1 50.2 ±3.1 · top neutral 62% ±4`,
and `≡` where the model gave one answer to at least 90% of the items (in a mean's cell: `≡` and those tasks).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from findap.eval.uncertainty import Interval, PairedDelta
from findap.report.board import Leaderboard, Row
from findap.report.layout import RAW_SCALE_METRICS

CONSTANT_MARK = "≡"
DETAIL_NAMES = (("mcc", "MCC"), ("f1_macro", "mF1"))


def fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def fmt_count(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def digits(row: Row) -> int:
    return 2 if row.metric in RAW_SCALE_METRICS else 1


def best_models(row: Row) -> set[str]:
    """The models with the row's highest value; none when fewer than two models have a value."""
    present = {m: v for m, v in row.values.items() if v is not None}
    if len(present) < 2:
        return set()
    top = max(present.values())
    return {m for m, v in present.items() if v == top}


def ci_text(value: float, ci: Interval, places: int) -> str:
    """`±2.1` (half-width of the 95% interval), or `[0.0, 24.2]` when the interval is far from symmetric around
    the value (scores near 0 or 100), where a ± would put one end outside it."""
    half = (ci.hi - ci.lo) / 2
    if abs((ci.hi - value) - (value - ci.lo)) <= 0.2 * half:
        return f"±{half:.{places}f}"
    return f"[{ci.lo:.{places}f}, {ci.hi:.{places}f}]"


def partial(row: Row, model: str) -> bool:
    """An average over fewer tasks than another model has in the same group."""
    return row.kind in ("average", "capability") and row.values.get(model) is not None \
        and row.n_tasks.get(model, 0) < max(row.n_tasks.values(), default=0)


def delta_text(delta: float | None, paired: PairedDelta | None, places: int = 1) -> str:
    """`(+4.2 [+1.0, +7.3]*)`; `(+4.2)` when the models could not be paired. One decimal: points, or rating
    points for judge scores."""
    if delta is None:
        return ""
    if paired is None:
        return f"({delta:+.{places}f})"
    mark = "*" if paired.significant else ""
    return f"({delta:+.{places}f} [{paired.lo:+.{places}f}, {paired.hi:+.{places}f}]{mark})"


def delta_direction(delta: float, paired: PairedDelta | None) -> str:
    """`up sig` / `down sig` for a significant difference, `ns` for one that is not, `up` / `down` (or nothing)
    for one that could not be paired."""
    if paired is None:
        return "up" if delta > 0 else "down" if delta < 0 else ""
    if paired.significant:
        return ("up" if delta > 0 else "down") + " sig"
    return "ns"


def delta_note(paired: PairedDelta | None) -> str:
    """The paired test behind a difference: `paired bootstrap p = 0.012, holm-adjusted p = 0.048, n = 240`."""
    if paired is None:
        return ""
    adjusted = f", {paired.adjust}-adjusted p = {paired.p_adjusted:.3f}" if paired.p_adjusted is not None else ""
    return f"paired bootstrap p = {paired.p_value:.3f}{adjusted}, n = {paired.n}"


def constant_text(row: Row, model: str) -> str:
    """`≡` for a task cell whose model gave one answer to most items; `≡ fpb, fomc` for a mean's cell."""
    tasks = row.constant.get(model)
    if not tasks or row.values.get(model) is None:
        return ""
    return CONSTANT_MARK if row.kind == "task" else f"{CONSTANT_MARK} {', '.join(tasks)}"


def constant_note(row: Row, model: str) -> str:
    """What a `≡` stands for: `one answer (neutral) to 95% of items`, or the tasks of a mean where it happened."""
    if not constant_text(row, model):
        return ""
    if row.kind == "task":
        top, share = row.top_pred.get(model), row.detail_values.get("top_pred_share", {}).get(model)
        return f"one answer ({top}) to {share:.0f}% of items" if top and share is not None \
            else "one answer to most items"
    return "one answer to most items of " + ", ".join(row.constant[model])


def _answer_name(answer: str) -> str:
    return answer if len(answer) <= 24 else answer[:23] + "…"


@dataclass
class Detail:
    """One score on the second line of a cell: `MCC 31.0` with its interval `±4.0`, `top neutral 62%` `±4`."""

    text: str
    interval: str = ""


def _detail(name: str, value: float, ci: Interval | None, places: int, unit: str = "") -> Detail:
    return Detail(f"{name} {value:.{places}f}{unit}", ci_text(value, ci, places) if ci is not None else "")


def details(row: Row, model: str) -> list[Detail]:
    """The second line of a task cell: MCC, macro-F1 and the most frequent answer's share, with intervals."""
    out = []
    for name, label in DETAIL_NAMES:
        value = row.detail_values.get(name, {}).get(model)
        if value is not None:
            out.append(_detail(label, value, row.details[name].get(model), 1))
    share = row.detail_values.get("top_pred_share", {}).get(model)
    if share is not None:
        top = row.top_pred.get(model)
        name = f"top {_answer_name(top)}" if top else "top"
        out.append(_detail(name, share, row.details["top_pred_share"].get(model), 0, "%"))
    return out


@dataclass
class ScoreCell:
    """One model's cell in one row, every part as text; empty parts are absent. The `*_note` fields say where a
    part comes from (the HTML page shows them on hover)."""

    value: str
    interval: str = ""
    interval_note: str = ""
    partial: bool = False  # `†`: an average over fewer tasks than another model has
    delta: str = ""
    direction: str = ""  # delta_direction
    delta_note: str = ""
    constant: str = ""
    constant_note: str = ""
    details: list[Detail] = field(default_factory=list)
    best: bool = False


def score_cell(board: Leaderboard, row: Row, model: str, best: bool) -> ScoreCell:
    value = row.values.get(model)
    places = digits(row)
    cell = ScoreCell(fmt(value, places), partial=partial(row, model), best=best,
                     constant=constant_text(row, model), constant_note=constant_note(row, model),
                     details=details(row, model))
    ci = row.intervals.get(model)
    if value is not None and ci is not None:
        cell.interval = ci_text(value, ci, places)
        cell.interval_note = f"95% interval [{ci.lo:.{places}f}, {ci.hi:.{places}f}], {ci.method}, n = {ci.n}"
    delta, paired = board.delta(row, model), row.paired.get(model)
    if delta is not None:
        cell.delta, cell.direction, cell.delta_note = delta_text(delta, paired), delta_direction(delta, paired), \
            delta_note(paired)
    return cell
