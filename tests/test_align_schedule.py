"""Token-budget steps and the warmup/decay curve, against hand-worked expectations."""
import pytest

from findap.align.packing import PackedRow
from findap.align.schedule import plan_steps, warmup_linear


def rows_of(lengths):
    return [PackedRow(input_ids=[0] * n) for n in lengths]


def test_steps_fill_the_token_budget_and_cover_every_row_once_per_epoch():
    rows = rows_of([30, 30, 30, 30, 30])
    steps = plan_steps(rows, batch_tokens=60, epochs=2, seed=0)
    assert [len(s) for s in steps] == [2, 2, 1, 2, 2, 1]
    assert sorted(i for s in steps[:3] for i in s) == [0, 1, 2, 3, 4]
    assert steps[:3] != steps[3:]  # reshuffled per epoch
    assert plan_steps(rows, 60, 2, seed=0) == steps  # seeded


def test_fractional_epoch():
    steps = plan_steps(rows_of([10] * 10), batch_tokens=10, epochs=1.5, seed=0)
    assert len(steps) == 15


def test_warmup_then_linear_decay():
    total, warm = 20, 0.1  # two warmup steps
    curve = [warmup_linear(s, total, warm) for s in range(total)]
    assert curve[:3] == [0.5, 1.0, pytest.approx(1.0)]
    assert curve[2] == pytest.approx(18 / 18) and curve[11] == pytest.approx(9 / 18)
    assert curve[-1] == pytest.approx(1 / 18) and warmup_linear(total, total, warm) == 0.0
