"""Multiplicity: every paired test the report shows is one comparison; `adjust` (holm or bh) marks differences by
p-values adjusted over all of them instead of by each test's own 95% interval.
"""
from __future__ import annotations

from dataclasses import replace

from findap.eval.uncertainty import ADJUSTMENTS, adjust_p_values
from findap.report.board import Leaderboard, Row


def parse_adjust(value: str) -> str:
    """The multiplicity adjustment named by `value` (the CLI's --adjust): none, holm or bh."""
    name = str(value).strip().lower()
    if name not in ADJUSTMENTS:
        raise ValueError(f"{value!r}: expected one of {', '.join(ADJUSTMENTS)} (none: each test's own 95% interval; "
                         "holm: family-wise error; bh: Benjamini-Hochberg false discovery rate)")
    return name


def _test_key(row: Row, model: str) -> tuple:
    """What a paired test compares: the model, the split and the (task, score) pairs averaged. An average row and
    its FinCap cell average the same tasks, and a one-task mean is its task's test: each is one comparison."""
    if row.kind == "task":
        return (model, row.split, ((row.label, row.metric),))
    return (model, row.split, tuple(sorted(zip(row.tasks, row.metrics))))


# The tables whose paired tests count as comparisons, in the order a test is attributed to the first that shows it
COMPARISON_TABLES = (("task rows", "rows", "task"), ("FinCap cells", "capabilities", None),
                     ("task sets", "task_sets", None), ("averages", "rows", "average"))


def adjust_marks(board: Leaderboard, adjust: str = "none") -> None:
    """Count the report's comparisons and, with `adjust` holm or bh, mark each paired test by its p-value adjusted
    over all of them (`PairedDelta.p_adjusted`; significant when at or below 5% and the interval excludes zero).

    The family is every distinct paired test the report shows: task rows, FinCap cells, task sets and average
    rows, a test shown twice (an average row and its FinCap cell, a one-task cell and its task's MCC) counted once.
    A task row's MCC row (`summary`) is shown only through a one-task cell and takes that cell's adjustment.
    """
    board.adjust = parse_adjust(adjust)
    tests: dict[tuple, float] = {}
    counts = {name: 0 for name, _, _ in COMPARISON_TABLES}
    shown: list[Row] = []
    for name, attribute, kind in COMPARISON_TABLES:
        for row in getattr(board, attribute):
            if kind is not None and row.kind != kind:
                continue
            shown.append(row)
            for model, paired in row.paired.items():
                if paired is not None and model != board.base and _test_key(row, model) not in tests:
                    tests[_test_key(row, model)] = paired.p_value
                    counts[name] += 1
    board.comparisons = {"total": len(tests), **counts}
    if board.adjust == "none" or not tests:
        return
    adjusted = dict(zip(tests, adjust_p_values(list(tests.values()), board.adjust)))
    for row in shown + [r.summary for r in board.rows if r.summary is not None]:
        for model, paired in row.paired.items():
            key = _test_key(row, model) if paired is not None else None
            if key in adjusted:
                row.paired[model] = replace(paired, p_adjusted=float(adjusted[key]), adjust=board.adjust)
