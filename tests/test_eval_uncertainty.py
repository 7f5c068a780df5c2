"""Intervals and paired significance against independent references: scipy's Wilson interval and exact McNemar
test, the analytic standard errors of a mean and of a paired difference, and reports built from result files."""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import stats as scipy_stats

from findap.eval.metrics import item_stats, mean_stats, score
from findap.eval.registry import get_task
from findap.report.build import build_report
from findap.eval.uncertainty import interval, paired_delta, task_seed, wilson


def test_wilson_interval_equals_scipy():
    for k, n in ((7, 20), (0, 12), (12, 12), (430, 1000)):
        ref = scipy_stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson(k / n, n) == pytest.approx((ref.low, ref.high), abs=1e-12)
    got = interval(mean_stats({"acc": [1.0] * 7 + [0.0] * 13}, bernoulli=["acc"]), "acc")
    assert got.method == "wilson" and got.n == 20
    assert got.stderr == pytest.approx(math.sqrt(0.35 * 0.65 / 20))


def test_bootstrap_stderr_of_a_mean_matches_the_analytic_one():
    values = np.random.default_rng(1).beta(2, 5, size=800)  # ROUGE-like per-item scores
    got = interval(mean_stats({"rouge1": values}), "rouge1", n_boot=2000, seed=5)
    analytic = values.std(ddof=1) / math.sqrt(values.size)
    assert got.method == "bootstrap"
    assert got.stderr == pytest.approx(analytic, rel=0.08)
    assert got.lo == pytest.approx(values.mean() - 1.96 * analytic, abs=0.25 * analytic)
    assert got.hi == pytest.approx(values.mean() + 1.96 * analytic, abs=0.25 * analytic)


def _paired_hits(n: int, both: int, only_a: int, only_b: int):
    """Per-item correctness of two models: `both` right on both, `only_a` / `only_b` right on one."""
    a = [1.0] * both + [1.0] * only_a + [0.0] * only_b + [0.0] * (n - both - only_a - only_b)
    b = [1.0] * both + [0.0] * only_a + [1.0] * only_b + [0.0] * (n - both - only_a - only_b)
    return mean_stats({"acc": a}, bernoulli=["acc"]), mean_stats({"acc": b}, bernoulli=["acc"])


@pytest.mark.parametrize("only_a,only_b,significant", [(34, 14, True), (22, 18, False), (20, 20, False)])
def test_paired_bootstrap_agrees_with_mcnemar_and_the_analytic_paired_stderr(only_a, only_b, significant):
    n = 300
    a, b = _paired_hits(n, 150, only_a, only_b)
    got = paired_delta(a, b, "acc", n_boot=4000, seed=11)
    # the paired difference of proportions: (b - c) / n with variance ((b + c) - (b - c)^2 / n) / n^2
    assert got.delta == pytest.approx((only_a - only_b) / n)
    analytic = math.sqrt((only_a + only_b) - (only_a - only_b) ** 2 / n) / n
    assert got.stderr == pytest.approx(analytic, rel=0.08)
    # McNemar's exact test: the discordant pairs under H0 are Binomial(b + c, 1/2)
    mcnemar = scipy_stats.binomtest(only_a, only_a + only_b, 0.5).pvalue
    assert got.significant is significant and bool(mcnemar < 0.05) is significant
    assert got.p_value == pytest.approx(mcnemar, abs=0.05 if significant else 0.35)


def test_pure_noise_is_not_significant_and_a_real_gain_is():
    """Two models of the same true accuracy with independent errors vs a model that is really 12 points better,
    scored by weighted F1 (a corpus metric: bootstrap only)."""
    rng = np.random.default_rng(7)
    spec = get_task("fpb").spec
    labels = spec.labels
    gold = list(rng.choice(labels, size=400))

    def model(accuracy: float) -> list:
        return [g if rng.random() < accuracy else str(rng.choice(labels)) for g in gold]

    docs = [{"gold": g} for g in gold]
    noise_a, noise_b, better = model(0.6), model(0.6), model(0.75)
    stats = {name: item_stats(p, docs, spec, "direct")["f1_weighted"]
             for name, p in (("a", noise_a), ("b", noise_b), ("better", better))}
    noise = paired_delta(stats["a"], stats["b"], "f1_weighted", seed=3)
    real = paired_delta(stats["better"], stats["b"], "f1_weighted", seed=3)
    assert not noise.significant and noise.lo < 0 < noise.hi and noise.p_value > 0.05
    assert real.significant and real.lo > 0 and real.p_value < 0.01


def test_bootstrap_is_seeded_and_fast_on_thousands_of_items():
    rng = np.random.default_rng(0)
    spec = get_task("fpb").spec
    gold = list(rng.choice(spec.labels, size=5000))
    preds = [g if rng.random() < 0.7 else None for g in gold]
    stats = item_stats(preds, [{"gold": g} for g in gold], spec, "direct")["f1_weighted"]
    start = time.perf_counter()
    first = interval(stats, "f1_weighted", seed=task_seed("fpb"))
    assert time.perf_counter() - start < 5.0
    assert interval(stats, "f1_weighted", seed=task_seed("fpb")) == first
    assert first.lo < first.value < first.hi and first.n == 5000


# ---- reports built from result files in the eval runner's layout -------------------------------------------
def _write_runner_result(path: Path, model: str, task: str, preds: list, gold: list, *, uncertainty=True):
    """A per-task result exactly as the runner lays it out, scored by the real metrics."""
    t = get_task(task)
    docs = [{"id": f"{task}-{i}", "gold": g} for i, g in enumerate(gold)]
    record = {
        "task": task, "mode": "direct", "model": model, "n": len(docs),
        "tags": {"capability": t.spec.capability.value, "domain": t.spec.domain.value,
                 "novelty": t.spec.novelty.value, "answer_type": t.spec.answer_type, "role": "unseen"},
        "scores": score(preds, docs, t.spec, "direct"),
        "settings": {"spec": t.spec.model_dump(mode="json", exclude={"description", "groups"})},
        "samples": [{"id": d["id"], "prediction": p, "gold": d["gold"]} for d, p in zip(docs, preds)],
    }
    if uncertainty:  # written by today's runner; older files lack it and must still get intervals
        from findap.eval.uncertainty import intervals

        record["uncertainty"] = intervals(item_stats(preds, docs, t.spec, "direct"), task_seed(task))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


@pytest.fixture
def paired_runs(tmp_path):
    rng = np.random.default_rng(2)
    labels = get_task("fpb").spec.labels
    gold = {t: [str(x) for x in rng.choice(labels, size=300)] for t in ("fpb", "fiqa_sa")}

    def model(task, accuracy):
        return [g if rng.random() < accuracy else str(rng.choice(labels)) for g in gold[task]]

    fiqa_labels = get_task("fiqa_sa").spec.labels
    assert set(fiqa_labels) == set(labels)
    _write_runner_result(tmp_path / "runs/base/eval/fpb.direct.json", "base", "fpb", model("fpb", 0.55), gold["fpb"])
    _write_runner_result(tmp_path / "runs/tuned/eval/fpb.direct.json", "tuned", "fpb", model("fpb", 0.8),
                         gold["fpb"], uncertainty=False)
    _write_runner_result(tmp_path / "runs/base/eval/fiqa_sa.direct.json", "base", "fiqa_sa",
                         model("fiqa_sa", 0.6), gold["fiqa_sa"])
    _write_runner_result(tmp_path / "runs/tuned/eval/fiqa_sa.direct.json", "tuned", "fiqa_sa",
                         model("fiqa_sa", 0.6), gold["fiqa_sa"])
    return tmp_path / "runs"


def test_report_marks_only_the_significant_delta_and_averages_carry_intervals(paired_runs, tmp_path):
    paths = build_report([paired_runs], tmp_path / "out", base="base", n_boot=500)
    board = json.loads(Path(paths["json"]).read_text())
    rows = {r["label"]: r for r in board["rows"]}
    fpb, fiqa, avg = rows["fpb"], rows["fiqa_sa"], rows["average"]
    assert fpb["paired"]["tuned"]["significant"] and fpb["paired"]["tuned"]["lo"] > 0
    assert not fiqa["paired"]["tuned"]["significant"]
    assert fiqa["paired"]["tuned"]["lo"] < 0 < fiqa["paired"]["tuned"]["hi"]
    # the file without an `uncertainty` block (an older runner) got its interval from its samples
    ci = fpb["intervals"]["tuned"]
    assert ci["method"] == "bootstrap" and ci["lo"] < fpb["values"]["tuned"] < ci["hi"] and ci["n"] == 300
    # the average row: mean of the tasks' chance-corrected values (each classification task enters by its MCC),
    # an interval around it, a paired delta = mean of the tasks' paired MCC deltas
    fpb_mcc, fiqa_mcc = fpb["summary"], fiqa["summary"]
    assert fpb_mcc["metric"] == fiqa_mcc["metric"] == "mcc" and avg["metrics"] == ["mcc", "mcc"]
    assert fpb_mcc["values"]["tuned"] == pytest.approx(100 * json.loads(
        (paired_runs / "tuned/eval/fpb.direct.json").read_text())["scores"]["mcc"])
    assert avg["values"]["tuned"] == pytest.approx((fpb_mcc["values"]["tuned"] + fiqa_mcc["values"]["tuned"]) / 2)
    assert avg["intervals"]["tuned"]["lo"] < avg["values"]["tuned"] < avg["intervals"]["tuned"]["hi"]
    assert avg["paired"]["tuned"]["delta"] == pytest.approx(
        (fpb_mcc["paired"]["tuned"]["delta"] + fiqa_mcc["paired"]["tuned"]["delta"]) / 2)
    # an average's interval is narrower than its tasks' (two independent tasks: about 1/sqrt(2) of one)
    width = lambda c: c["hi"] - c["lo"]  # noqa: E731
    assert width(avg["intervals"]["base"]) < width(fpb_mcc["intervals"]["base"])

    md = Path(paths["markdown"]).read_text()
    fpb_line = next(line for line in md.splitlines() if line.startswith("| ") and "| fpb |" in line)
    d = fpb["paired"]["tuned"]
    assert f"({d['delta']:+.1f} [{d['lo']:+.1f}, {d['hi']:+.1f}]*)" in fpb_line
    assert fpb_line.rstrip().endswith("| 300 |")  # n per task
    fiqa_line = next(line for line in md.splitlines() if "| fiqa_sa |" in line)
    assert "]*)" not in fiqa_line and "±" in fiqa_line
    assert "significantly better on fpb" in md and "excludes zero" in md

    page = Path(paths["html"]).read_text()
    # fpb and the average (+25 and ~0 points over two tasks) are significant, the average twice (its Table 6 row
    # and the FinCap cell task/finance/similar, the same two tasks); fiqa_sa is grey
    assert page.count('class="up sig"') == 3 and page.count('class="ns"') == 1


def test_samples_that_do_not_reproduce_the_score_give_no_interval(paired_runs, tmp_path):
    path = paired_runs / "tuned/eval/fiqa_sa.direct.json"
    record = json.loads(path.read_text())
    record["scores"]["f1_weighted"] += 0.05  # scored by some other metric version: its samples no longer agree
    record.pop("uncertainty", None)
    path.write_text(json.dumps(record))
    board = json.loads(Path(build_report([paired_runs], tmp_path / "out", base="base", n_boot=200)["json"]).read_text())
    fiqa = next(r for r in board["rows"] if r["label"] == "fiqa_sa")
    assert fiqa["intervals"]["tuned"] is None and fiqa["paired"]["tuned"] is None
    assert fiqa["deltas"]["tuned"] == pytest.approx(fiqa["values"]["tuned"] - fiqa["values"]["base"])
    avg = next(r for r in board["rows"] if r["kind"] == "average")
    assert avg["intervals"]["tuned"] is None and avg["intervals"]["base"] is not None


def test_models_are_paired_on_shared_item_ids_only(paired_runs, tmp_path):
    path = paired_runs / "tuned/eval/fpb.direct.json"
    record = json.loads(path.read_text())
    record["samples"] = record["samples"][::-1][:200]  # another order, and 100 items fewer
    preds = [s["prediction"] for s in record["samples"]]
    docs = [{"gold": s["gold"]} for s in record["samples"]]
    record["scores"] = score(preds, docs, get_task("fpb").spec, "direct")
    record["n"] = 200
    path.write_text(json.dumps(record))
    board = json.loads(Path(build_report([paired_runs], tmp_path / "out", base="base", n_boot=200)["json"]).read_text())
    fpb = next(r for r in board["rows"] if r["label"] == "fpb")
    assert fpb["paired"]["tuned"]["n"] == 200 and fpb["n"] == {"base": 300, "tuned": 200}
    base = json.loads((paired_runs / "base/eval/fpb.direct.json").read_text())
    shared = {s["id"] for s in record["samples"]}
    base_preds = [s["prediction"] for s in base["samples"] if s["id"] in shared]
    base_docs = [{"gold": s["gold"]} for s in base["samples"] if s["id"] in shared]
    base_on_shared = score(base_preds, base_docs, get_task("fpb").spec, "direct")["f1_weighted"]
    assert fpb["paired"]["tuned"]["delta"] == pytest.approx(100 * (record["scores"]["f1_weighted"] - base_on_shared))


def test_decontamination_note_of_the_curate_stage_is_shown(paired_runs, tmp_path):
    curate = paired_runs / "tuned" / "curate"
    curate.mkdir(parents=True)
    note = "Checked 20 of 42 tasks; not checked (data not on disk): ectsum, edtsum."
    (curate / "DONE").write_text(json.dumps({"stage": "curate", "decontamination": {"note": note, "removed": 3}}))
    paths = build_report([paired_runs], tmp_path / "out", base="base", n_boot=100)
    assert note in Path(paths["markdown"]).read_text() and note in Path(paths["html"]).read_text()


def test_runner_writes_intervals_and_rescoring_an_old_file_needs_no_model(tmp_path):
    """A real tiny model on FPB (generation) and TAT-QA: every score gets n/stderr/ci95, TAT-QA samples keep the
    gold fields its metric needs; an older file without intervals is scored again from its stored outputs on
    resume, without asking the model (the engine counts its calls)."""
    from findap.engines.base import EngineSpec
    from findap.engines.hf import HFEngine
    from findap.eval.runner import evaluate
    from findap.eval.task import Task
    from findap.models import tiny_llama

    tasks = [Task(get_task("fpb").spec.model_copy(update={"max_new_tokens": 4})),
             Task(get_task("tatqa").spec.model_copy(update={"max_new_tokens": 4}))]
    model, tok = tiny_llama(seed=0)
    engine = HFEngine(EngineSpec(model="m", device="cpu", precision="fp32", batch_size=8), model=model, tokenizer=tok)
    evaluate(engine, tasks, limit=5, out_dir=tmp_path, model_name="m", progress=False)
    fpb_path, tatqa_path = tmp_path / "fpb.direct.json", tmp_path / "tatqa.direct.json"
    fpb = json.loads(fpb_path.read_text())
    assert set(fpb["uncertainty"]) == set(fpb["scores"])
    for name, u in fpb["uncertainty"].items():
        assert u["n"] == 5 and u["ci95"][0] <= fpb["scores"][name] <= u["ci95"][1] and u["stderr"] >= 0
    tatqa = json.loads(tatqa_path.read_text())
    assert {"tatqa_em", "tatqa_f1", "tatqa_f1_drop"} <= set(tatqa["uncertainty"])
    assert all({"gold_raw", "gold_type", "scale"} <= set(s) for s in tatqa["samples"])

    old = dict(fpb)
    old.pop("uncertainty")
    old["scores"] = {**fpb["scores"], "f1_weighted": 0.123}  # as an older metric had scored it
    fpb_path.write_text(json.dumps(old))
    calls = engine.model_calls
    evaluate(engine, tasks[:1], limit=5, out_dir=tmp_path, model_name="m", progress=False)
    again = json.loads(fpb_path.read_text())
    assert again["scores"] == fpb["scores"] and again["uncertainty"] == fpb["uncertainty"]
    assert engine.model_calls == calls  # scored again from the stored outputs: the same weights, no model call


def test_capability_plot_draws_the_intervals(paired_runs):
    """The bars carry error bars: the same board drawn without its intervals gives a different picture."""
    from dataclasses import replace

    from findap.report.collect import load_results
    from findap.report.leaderboard import build_leaderboard
    from findap.report.plots import capability_bars

    board = build_leaderboard(load_results([paired_runs]), base="base", n_boot=100)
    with_bars = capability_bars(board, "unseen", "task")
    bare = replace(board, rows=[replace(r, intervals={}, paired={}) for r in board.rows])
    assert with_bars is not None and with_bars != capability_bars(bare, "unseen", "task")


# ---- many comparisons at once --------------------------------------------------------------------------------
P_VALUES = [0.01, 0.04, 0.03, 0.005, 0.2, 0.04, 0.9, 0.0021]


def test_holm_and_benjamini_hochberg_equal_their_references():
    """BH against scipy's false_discovery_control; Holm by hand: sorted p times m, m-1, ..., 1, made
    non-decreasing (the two 0.04s share one value), capped at 1."""
    from scipy.stats import false_discovery_control

    from findap.eval.uncertainty import adjust_p_values

    assert adjust_p_values(P_VALUES, "bh") == pytest.approx(false_discovery_control(P_VALUES, method="bh"))
    # sorted: 0.0021*8, 0.005*7, 0.01*6, 0.03*5, 0.04*4, max(0.04*3, 0.16), 0.2*2, 0.9*1
    holm = [0.06, 0.16, 0.15, 0.035, 0.4, 0.16, 0.9, 0.0168]
    assert adjust_p_values(P_VALUES, "holm") == pytest.approx(holm)
    assert adjust_p_values([0.3, 0.6], "holm") == pytest.approx([0.6, 0.6])  # 0.6 * 1 but never below 0.3 * 2
    assert adjust_p_values([0.5, 0.9], "holm") == pytest.approx([1.0, 1.0])  # capped at 1
    assert list(adjust_p_values(P_VALUES, "none")) == P_VALUES and adjust_p_values([], "bh").size == 0
    with pytest.raises(ValueError, match="holm"):
        adjust_p_values(P_VALUES, "bonferroni")


def test_holm_and_benjamini_hochberg_equal_statsmodels():
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    from findap.eval.uncertainty import adjust_p_values

    for ours, theirs in (("holm", "holm"), ("bh", "fdr_bh")):
        assert adjust_p_values(P_VALUES, ours) == pytest.approx(multitest.multipletests(P_VALUES, method=theirs)[1])


def test_bootstrap_p_value_counts_both_sides_with_the_plus_one_correction():
    from findap.eval.uncertainty import bootstrap_p_value, smallest_p_value

    replicates = np.array([-1.0] * 3 + [0.0] + [1.0] * 96)  # 4 at or below zero, 97 at or above
    assert bootstrap_p_value(replicates) == pytest.approx(2 * (4 + 1) / (100 + 1))
    assert bootstrap_p_value(np.ones(1000)) == pytest.approx(smallest_p_value(1000)) == pytest.approx(2 / 1001)
    assert bootstrap_p_value(np.zeros(0)) == 1.0


def test_an_adjusted_mark_needs_both_the_adjusted_p_and_the_interval():
    from dataclasses import replace

    from findap.eval.uncertainty import PairedDelta

    per_test = PairedDelta(delta=3.0, n=100, stderr=1.0, lo=1.0, hi=5.0, p_value=0.004)
    assert per_test.significant and per_test.scaled(100).p_adjusted is None
    assert replace(per_test, p_adjusted=0.04, adjust="holm").significant
    assert not replace(per_test, p_adjusted=0.06, adjust="holm").significant
    assert not replace(per_test, lo=-0.5, p_adjusted=0.01, adjust="bh").significant  # interval holds zero
    assert replace(per_test, p_adjusted=0.04, adjust="bh").scaled(0.01).p_adjusted == 0.04
