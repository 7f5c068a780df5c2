"""Token-budget steps and the warmup/decay curve, against hand-worked expectations."""
import pytest
import torch

from findap.align.config import AlignConfig
from findap.align.packing import PackedRow
from findap.align.schedule import plan_steps
from findap.train.config import TrainConfig
from findap.training.optim import lr_factor, optimizer_for, warmup_steps


def rows_of(lengths):
    return [PackedRow(input_ids=[0] * n) for n in lengths]


def test_steps_fill_the_token_budget_and_cover_every_row_once_per_epoch():
    rows = rows_of([30, 30, 30, 30, 30])
    steps = plan_steps(rows, tokens_per_step=60, epochs=2, seed=0)
    assert [len(s) for s in steps] == [2, 2, 1, 2, 2, 1]
    assert sorted(i for s in steps[:3] for i in s) == [0, 1, 2, 3, 4]
    assert steps[:3] != steps[3:]  # reshuffled per epoch
    assert plan_steps(rows, 60, 2, seed=0) == steps  # seeded


def test_fractional_epoch():
    steps = plan_steps(rows_of([10] * 10), tokens_per_step=10, epochs=1.5, seed=0)
    assert len(steps) == 15


def test_warmup_then_linear_decay():
    total, warm = 20, warmup_steps(0.1, 20)  # two warmup steps
    curve = [lr_factor(s, total, warm) for s in range(total)]
    assert curve[:3] == [0.5, 1.0, pytest.approx(1.0)]
    assert curve[2] == pytest.approx(18 / 18) and curve[11] == pytest.approx(9 / 18)
    assert curve[-1] == pytest.approx(1 / 18) and lr_factor(total, total, warm) == 0.0


def test_one_schedule_and_optimizer_rule_for_both_stages():
    """Align and stage 1 build the same AdamW (no decay on 1-D parameters) and the same curve from the same
    knobs. The warmup rounds to whole steps (Python rounding); under half a step is no warmup. Align used to round
    a positive warmup up to one step: with 4 steps at warmup 0.1 its curve was 1, 1, 2/3, 1/3."""
    assert [warmup_steps(0.1, n) for n in (4, 5, 6, 15, 20)] == [0, 0, 1, 2, 2]
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    curves = []
    for cfg in (AlignConfig(lr=1e-3, weight_decay=0.1), TrainConfig(lr=1e-3, weight_decay=0.1)):
        optimizer, scheduler = optimizer_for(model, cfg, cfg.lr, cfg.warmup, 4)
        assert [len(g["params"]) for g in optimizer.param_groups] == [1, 3]  # the weight matrix alone decays
        assert [g["weight_decay"] for g in optimizer.param_groups] == [0.1, 0.0]
        curve = []
        for _ in range(4):
            curve.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        curves.append(curve)
    assert curves[0] == curves[1] == pytest.approx([1e-3, 0.75e-3, 0.5e-3, 0.25e-3])
