"""The words around a report's tables, the same on every page format: the key to a cell (the legend), how the
intervals are computed, how many paired tests were made and how their marks control for that, what each run's
trained / similar / novel was decided from, and per model where it differs significantly from the base model.
"""
from __future__ import annotations

from findap.eval.uncertainty import ALPHA, smallest_p_value
from findap.report.board import Leaderboard, Row
from findap.report.cells import CONSTANT_MARK, constant_text
from findap.report.layout import CONSTANT_SHARE, SUMMARY_METRIC
from findap.report.multiplicity import COMPARISON_TABLES

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



CAPABILITY_NOTE = ("Each cell is the mean of its tasks' scores (the task rows of the tables below; classification "
                   "tasks by MCC, so a constant answer adds 0), with the 95% interval of that mean and the paired "
                   "difference to the base model on the same scores; ≡ names tasks where the model gave one answer "
                   "to most items.")
TASK_SET_NOTE = ("Each named set (eval.task_sets, findap report --task-set) is the mean of its tasks' scores "
                 "(classification tasks by MCC), with the 95% interval of that mean and the paired difference to "
                 "the base model on the same scores.")


def significance_summary(board: Leaderboard) -> list[tuple[str, str]]:
    """Per model other than the base: (model, `vs base: 7 tasks paired; significantly better on ...; significantly
    worse on ...`). Empty without a base model."""
    if not board.base:
        return []
    out = []
    for m in board.models[1:]:
        tasks = [r for r in board.rows if r.kind == "task" and r.paired.get(m) is not None]
        ups = [_marked(r, m) for r in tasks if r.paired[m].significant and r.paired[m].delta > 0]
        downs = [_marked(r, m) for r in tasks if r.paired[m].significant and r.paired[m].delta < 0]
        out.append((m, f" vs {board.base}: {len(tasks)} tasks paired; significantly better on "
                       f"{', '.join(ups) or 'none'}; significantly worse on {', '.join(downs) or 'none'}."))
    return out


def _marked(row: Row, model: str) -> str:
    """A task's label with its `≡` when the model gave one answer to most of its items."""
    mark = constant_text(row, model)
    return f"{row.label} {mark}" if mark else row.label
