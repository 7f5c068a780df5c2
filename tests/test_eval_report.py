"""Reports built from real result files in tmp_path: table numbers, deltas, costs, HTML self-containment, PNGs."""
import io
import json
import os
import re
from pathlib import Path

import pytest
from PIL import Image

from findap.report.build import build_report
from findap.report.collect import load_results
from findap.io import DataError

# (task, capability, domain, novelty, metric, {model: raw metric value})
RESULTS = [
    ("fpb", "task", "finance", "similar", "f1_weighted", {"base": 0.412, "tuned": 0.733}),
    ("fomc", "task", "finance", "similar", "f1_weighted", {"base": 0.301, "tuned": 0.455}),
    ("finer", "task", "finance", "similar", "entity_f1", {"base": 0.120, "tuned": 0.388}),
    ("mmlu", "concept", "general", "novel", "acc", {"base": 0.250, "tuned": 0.262}),
    ("arc_easy", "concept", "general", "novel", "acc", {"base": 0.504, "tuned": 0.47}),
    ("cfa_easy", "reasoning", "finance", "novel", "acc", {"base": 0.31, "tuned": 0.36}),
    ("mtbench", "chat", "general", "novel", "score", {"base": 4.25, "tuned": 3.5}),
]


def write_result(path: Path, task, capability, domain, novelty, metric, value, model, mode="direct", extra=None):
    scores = {metric: value, "n": 40, **(extra or {})}
    record = {"task": task, "model": model, "mode": mode, "capability": capability, "domain": domain,
              "novelty": novelty, "split": "unseen", "scores": scores,
              "samples": [{"id": "0", "prediction": "neutral", "gold": "neutral"}]}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))


@pytest.fixture
def runs(tmp_path):
    for task, cap, dom, nov, metric, values in RESULTS:
        for model, value in values.items():
            extra = {"parse_failure_rate": 0.25, "n_judged": 4.0} if metric == "score" else None
            write_result(tmp_path / "runs" / model / "eval" / f"{task}.json", task, cap, dom, nov, metric, value,
                         model, extra=extra)
    # the tuned run also has a training stage with a DONE summary and a loss log
    train = tmp_path / "runs" / "tuned" / "train"
    train.mkdir(parents=True)
    (train / "DONE").write_text(json.dumps({"stage": "train", "wall_s": 40.0, "tokens": 81920}))
    with open(train / "metrics.jsonl", "w") as f:
        for step in range(20):
            row = {"time": step * 2.0, "step": step, "loss": 3.0 - 0.1 * step}
            if step % 5 == 0:
                row["dev_loss"] = 3.1 - 0.1 * step
            f.write(json.dumps(row) + "\n")
        f.write('{"time": 40.0, "st')  # a torn last line from a killed run is tolerated
    (tmp_path / "runs" / "tuned" / "curate").mkdir()
    (tmp_path / "runs" / "tuned" / "curate" / "manifest.json").write_text(json.dumps({"groups": ["g1"]}))
    return tmp_path / "runs"


def markdown_rows(md: str) -> list[list[str]]:
    return [[c.strip() for c in line.strip().strip("|").split("|")] for line in md.splitlines()
            if line.startswith("| ") and not line.startswith("| group") and not line.startswith("|---")]


def cell_number(cell: str) -> float:
    return float(re.match(r"\**(-?\d+\.\d+)", cell).group(1))


def test_leaderboard_numbers_equal_the_inputs(runs, tmp_path):
    paths = build_report([runs / "base", runs / "tuned"], tmp_path / "out", base="base")
    board = json.loads(Path(paths["json"]).read_text())
    assert board["models"] == ["base", "tuned"]
    rows = board["rows"]
    task_rows = {r["label"]: r for r in rows if r["kind"] == "task"}
    for task, _, _, _, metric, values in RESULTS:
        scale = 1 if metric == "score" else 100
        for model, raw in values.items():
            assert task_rows[task]["values"][model] == pytest.approx(raw * scale)
        assert task_rows[task]["deltas"]["tuned"] == pytest.approx((values["tuned"] - values["base"]) * scale)

    # Table 6 order: similar before novel; concept before reasoning before chat
    labels = [r["label"] for r in rows if r["kind"] == "task"]
    assert labels.index("fpb") < labels.index("mmlu") < labels.index("cfa_easy") < labels.index("mtbench")

    # group averages recomputed here from the raw inputs
    def expected_avg(model, names):
        vals = [v[model] * 100 for t, *_, v in RESULTS if t in names]
        return sum(vals) / len(vals)

    averages = [r for r in rows if r["kind"] == "average"]
    assert not [r for r in averages if r["capability"] in ("reasoning", "chat")]  # one-task groups: no average
    task_fin = next(r for r in averages if (r["capability"], r["novelty"]) == ("task", "similar"))
    concept = next(r for r in averages if r["capability"] == "concept")
    for model in ("base", "tuned"):
        assert task_fin["values"][model] == pytest.approx(expected_avg(model, {"fpb", "fomc", "finer"}))
        assert concept["values"][model] == pytest.approx(expected_avg(model, {"mmlu", "arc_easy"}))

    # the Markdown shows the same numbers, rounded, with deltas against the base
    md = Path(paths["markdown"]).read_text()
    md_rows = markdown_rows(md)
    fpb = next(r for r in md_rows if r[1] == "fpb")
    assert cell_number(fpb[3]) == 41.2 and cell_number(fpb[4]) == 73.3 and "(+32.1)" in fpb[4]
    assert fpb[4].startswith("**")  # best in the row is bold
    avg_task = next(r for r in md_rows if r[1] == "*average*")  # the first average closes Task / finance
    assert cell_number(avg_task[3]) == round(expected_avg("base", {"fpb", "fomc", "finer"}), 1)
    mt = next(r for r in md_rows if r[1].startswith("mtbench"))
    assert mt[1].endswith("\\*") and cell_number(mt[3]) == 4.25 and "(-0.8)" in mt[4]
    assert "25.0%" in md  # the judge parse-failure rate is reported
    cost = next(r for r in md_rows if r[:2] == ["tuned", "train"])
    assert cost[2:6] == ["yes", "40.0", "81,920", "2,048"]  # tokens/s = 81920 / 40


def test_cost_table_shows_each_stages_peak_rss(runs, tmp_path):
    """The peak RSS column comes from each stage's DONE (findap.host_memory.peak_memory): the larger of the stage
    process's own peak and its launcher workers'; a DONE without one shows a dash, not 0."""
    (runs / "tuned" / "train" / "DONE").write_text(json.dumps(
        {"wall_s": 40.0, "tokens": 81920, "peak_rss_gb": 3.456, "peak_rss_children_gb": 5.25}))
    (runs / "tuned" / "distill").mkdir()
    (runs / "tuned" / "distill" / "DONE").write_text(json.dumps({"wall_s": 9.0, "peak_rss_gb": 1.755}))
    (runs / "tuned" / "curate" / "DONE").write_text(json.dumps({"wall_s": 2.0}))
    paths = build_report([runs / "tuned"], tmp_path / "out")
    md = Path(paths["markdown"]).read_text()
    assert "| run | stage | done | wall time (s) | tokens | tokens/s | peak RSS (GB) |" in md
    rows = {r[1]: r for r in markdown_rows(md) if r[0] == "tuned"}
    assert rows["train"][-1] == "5.25" and rows["distill"][-1] == "1.75" and rows["curate"][-1] == "–"
    board = json.loads(Path(paths["json"]).read_text())
    assert {c["stage"]: c["peak_rss_gb"] for c in board["costs"]} == {"curate": None, "distill": 1.755,
                                                                      "train": 5.25}
    page = Path(paths["html"]).read_text()
    assert "<th>peak RSS (GB)</th>" in page and "<td>5.25</td>" in page


def test_cost_of_a_resumed_stage_counts_its_training_over_every_process(runs, tmp_path):
    """A train stage resumed after a kill: its DONE's wall_s is the last process's 914 s, but its 1,006,612 tokens
    were processed over 7,707 s of training in two processes. The speed is tokens over the whole training time
    (130.6 tok/s), never the last process's share (1,101 tok/s: what this table showed before)."""
    (runs / "tuned" / "train" / "DONE").write_text(json.dumps(
        {"wall_s": 914.47, "train_wall_s": 7707.25, "tokens": 1006612, "peak_rss_gb": 6.953}))
    paths = build_report([runs / "tuned"], tmp_path / "out")
    row = next(r for r in markdown_rows(Path(paths["markdown"]).read_text()) if r[:2] == ["tuned", "train"])
    assert row[2:6] == ["yes", "7707.2", "1,006,612", "131"]


def test_html_is_self_contained_and_plots_decode(runs, tmp_path):
    paths = build_report([runs], tmp_path / "out")
    page = Path(paths["html"]).read_text()
    assert "http://" not in page and "https://" not in page and "<link" not in page and "<script" not in page
    refs = re.findall(r"""(?:src|href)\s*=\s*['"]([^'"]+)""", page)
    assert refs and all(ref.startswith("data:image/png;base64,") for ref in refs)
    names = {Path(p).name for p in paths["plots"]}
    assert {"unseen_task.png", "unseen_concept.png", "unseen_chat.png", "loss_train.png"} <= names
    for ref in refs:
        import base64

        img = Image.open(io.BytesIO(base64.b64decode(ref.split(",", 1)[1])))
        img.load()
        assert img.format == "PNG" and img.width > 200 and img.height > 100
    for p in paths["plots"]:
        with Image.open(p) as img:
            img.load()
    assert "fpb" in page and "73.3" in page and "41.2" in page


def test_base_given_as_a_path_and_a_third_model(runs, tmp_path):
    write_result(tmp_path / "other" / "eval" / "fpb.json", "fpb", "task", "finance", "similar", "f1_weighted",
                 0.5, "other")
    paths = build_report([runs / "tuned", tmp_path / "other"], tmp_path / "out", base=str(runs / "base"))
    board = json.loads(Path(paths["json"]).read_text())
    assert board["base"] == "base" and board["models"][0] == "base"
    fpb = next(r for r in board["rows"] if r["label"] == "fpb")
    assert fpb["deltas"]["other"] == pytest.approx(50.0 - 41.2)
    fomc_avg = next(r for r in board["rows"] if r["kind"] == "average" and r["capability"] == "task")
    assert fomc_avg["n_tasks"] == {"base": 3, "tuned": 3, "other": 1}
    assert "†" in Path(paths["markdown"]).read_text()  # the partial average is marked


def test_cot_rows_and_later_results_replace_earlier_ones(tmp_path):
    d = tmp_path / "run" / "eval"
    write_result(d / "a_fpb.json", "fpb", "task", "finance", "similar", "f1_weighted", 0.2, "m")
    write_result(d / "b_fpb.json", "fpb", "task", "finance", "similar", "f1_weighted", 0.6, "m")
    write_result(d / "fpb_cot.json", "fpb", "task", "finance", "similar", "f1_weighted", 0.7, "m", mode="cot")
    os.utime(d / "a_fpb.json", ns=(2 * 10**18, 2 * 10**18))  # a_fpb is the newest, despite its name
    results = {(r.task, r.mode): r.value for r in load_results([tmp_path / "run"])}
    assert results == {("fpb", "direct"): pytest.approx(20.0), ("fpb", "cot"): pytest.approx(70.0)}
    os.utime(d / "b_fpb.json", ns=(3 * 10**18, 3 * 10**18))
    results = {(r.task, r.mode): r.value for r in load_results([tmp_path / "run"])}
    assert results == {("fpb", "direct"): pytest.approx(60.0), ("fpb", "cot"): pytest.approx(70.0)}


def test_bad_inputs_name_file_and_field(tmp_path):
    d = tmp_path / "run" / "eval"
    write_result(d / "x.json", "fpb", "feelings", "finance", "similar", "acc", 0.2, "m")
    with pytest.raises(DataError, match=r"x\.json.*field 'capability'.*'feelings'"):
        load_results([tmp_path / "run"])
    (d / "x.json").write_text('{"task": "fpb",\n "scores": [1, 2]}')
    with pytest.raises(DataError, match=r"x\.json.*field 'scores'"):
        load_results([tmp_path / "run"])
    (d / "x.json").write_text('{"task": "fpb",\n "scores": {"acc": 0.5,}}')
    with pytest.raises(DataError, match=r"x\.json:2: invalid JSON"):
        load_results([tmp_path / "run"])
    with pytest.raises(FileNotFoundError, match="missing"):
        build_report([tmp_path / "missing"], tmp_path / "out")
    (d / "x.json").unlink()
    with pytest.raises(ValueError, match="no task results"):
        build_report([tmp_path / "run"], tmp_path / "out")


def test_judge_task_with_no_parsed_score_still_gets_a_row(tmp_path):
    d = tmp_path / "run" / "eval"
    write_result(d / "mt.json", "mtbench", "chat", "general", "novel", "score", None, "m",
                 extra={"parse_failure_rate": 1.0, "n_judged": 4.0})
    write_result(d / "fpb.json", "fpb", "task", "finance", "similar", "f1_weighted", 0.5, "m")
    md = Path(build_report([tmp_path / "run"], tmp_path / "out")["markdown"]).read_text()
    mt = next(r for r in markdown_rows(md) if r[1].startswith("mtbench"))
    assert mt[3] == "–" and "100.0%" in md


def test_report_from_real_runner_outputs_of_two_tiny_models(tmp_path):
    """The eval runner writes real result files (FPB generation, ARC log-likelihood) for two random tiny models;
    the report's cells equal the runner's scores."""
    from findap.engines.base import EngineSpec
    from findap.engines.hf import HFEngine
    from findap.eval.registry import resolve
    from findap.eval.runner import evaluate
    from findap.eval.task import Task
    from findap.models import tiny_llama

    specs = {s.name: s for s in resolve(["fpb", "arc"])}
    tasks = [Task(specs["fpb"].model_copy(update={"max_new_tokens": 4})), Task(specs["arc"])]
    written = {}
    for label, seed in (("base", 0), ("tuned", 1)):
        model, tok = tiny_llama(seed=seed)
        engine = HFEngine(EngineSpec(model=label, device="cpu", precision="fp32", batch_size=8),
                          model=model, tokenizer=tok)
        out = tmp_path / "runs" / label / "eval"
        evaluate(engine, tasks, limit=6, out_dir=out, model_name=label, progress=False)
        written[label] = {p.name: json.loads(p.read_text()) for p in out.glob("*.direct.json")}

    paths = build_report([tmp_path / "runs"], tmp_path / "out", base="base")
    board = json.loads(Path(paths["json"]).read_text())
    rows = {r["label"]: r for r in board["rows"] if r["kind"] == "task"}
    assert set(rows) == {"fpb", "arc"}
    assert rows["fpb"]["metric"] == "f1_weighted" and rows["arc"]["metric"] == "acc"
    assert (rows["fpb"]["capability"], rows["fpb"]["novelty"]) == ("task", "similar")
    assert (rows["arc"]["capability"], rows["arc"]["domain"], rows["arc"]["novelty"]) == ("concept", "general", "novel")
    for label in ("base", "tuned"):
        assert rows["fpb"]["values"][label] == pytest.approx(100 * written[label]["fpb.direct.json"]["scores"]["f1_weighted"])
        assert rows["arc"]["values"][label] == pytest.approx(100 * written[label]["arc.direct.json"]["scores"]["acc"])
    assert rows["arc"]["deltas"]["tuned"] == pytest.approx(rows["arc"]["values"]["tuned"] - rows["arc"]["values"]["base"])


def test_report_is_a_stage_like_the_others(tmp_path):
    """The pipeline finds the report stage as it finds every other (`findap.report.stage.run`) and runs it."""
    from findap.pipeline import run_stage, stage_function
    from findap.recipe import Recipe
    from findap.report import stage as report_stage

    assert stage_function("report") is report_stage.run
    recipe = Recipe(name="demo", runs_dir=str(tmp_path / "runs"), eval={"task_sets": {"sentiment": ["fpb"]}})
    for label, value in (("base", 0.25), ("cpt_it", 0.5)):
        write_result(recipe.run_dir / "eval" / label / "fpb.direct.json", "fpb", "task", "finance", "similar",
                     "f1_weighted", value, label)
    (recipe.run_dir / "train" / "model").mkdir(parents=True)
    (recipe.run_dir / "train" / "model" / "config.json").write_text("{not json: model files are never read}")
    summary = run_stage(recipe, "report")
    assert summary["base"] == "base" and summary["models"] == ["base", "cpt_it"]
    assert (recipe.run_dir / "report" / "DONE").exists()
    board = json.loads(Path(summary["outputs"]["json"]).read_text())
    fpb = next(r for r in board["rows"] if r["label"] == "fpb")
    assert fpb["deltas"]["cpt_it"] == pytest.approx(25.0)
    assert [(r["label"], r["tasks"], r["values"]) for r in board["task_sets"]] == [("sentiment", ["fpb"], fpb["values"])]
    assert Path(summary["outputs"]["html"]).parent == recipe.run_dir / "report"


# ---- the FinCap view: capability x domain x novelty, each cell the mean of its tasks ---------------------------
def write_scored_result(path: Path, model: str, task: str, preds: list, gold: list) -> dict:
    """A per-task result in the eval runner's layout, scored by the real metrics (so intervals and pairing work)."""
    from findap.eval.metrics import score
    from findap.eval.registry import get_task

    spec = get_task(task).spec
    docs = [{"id": f"{task}-{i}", "gold": g} for i, g in enumerate(gold)]
    record = {
        "task": task, "mode": "direct", "model": model, "n": len(docs),
        "tags": {"capability": spec.capability.value, "domain": spec.domain.value, "novelty": spec.novelty.value,
                 "answer_type": spec.answer_type, "role": "unseen"},
        "scores": score(preds, docs, spec, "direct"),
        "settings": {"spec": spec.model_dump(mode="json", exclude={"description", "groups"})},
        "samples": [{"id": d["id"], "prediction": p, "gold": d["gold"]} for d, p in zip(docs, preds)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return record


# task -> accuracy of (base, tuned): the similar finance tasks gain, the novel ones stay where they were
FINCAP_TASKS = {"fpb": (0.5, 0.85), "fiqa_sa": (0.55, 0.85), "flare_german": (0.6, 0.6), "sm_acl": (0.5, 0.5)}


@pytest.fixture
def fincap_runs(tmp_path):
    import numpy as np

    from findap.eval.registry import get_task

    rng = np.random.default_rng(4)
    headline = {}  # (task, model) -> the score the task enters means by (MCC: chance-corrected), x100
    for task, accuracies in FINCAP_TASKS.items():
        labels = get_task(task).spec.labels
        gold = [str(x) for x in rng.choice(labels, size=240)]
        for model, accuracy in zip(("base", "tuned"), accuracies):
            preds = [g if rng.random() < accuracy else str(rng.choice(labels)) for g in gold]
            record = write_scored_result(tmp_path / "runs" / model / "eval" / f"{task}.direct.json", model, task,
                                         preds, gold)
            headline[task, model] = 100 * record["scores"]["mcc"]
    return tmp_path / "runs", headline


def test_fincap_cells_are_the_mean_of_their_tasks(fincap_runs, tmp_path):
    runs, headline = fincap_runs
    paths = build_report([runs], tmp_path / "out", base="base", n_boot=300)
    board = json.loads(Path(paths["json"]).read_text())
    cells = {(c["capability"], c["domain"], c["novelty"]): c for c in board["capabilities"]}
    assert list(cells) == [("task", "finance", "similar"), ("task", "finance", "novel")]
    members = {("task", "finance", "similar"): ["fiqa_sa", "fpb"],
               ("task", "finance", "novel"): ["flare_german", "sm_acl"]}
    for key, tasks in members.items():
        cell = cells[key]
        assert sorted(cell["tasks"]) == tasks and cell["split"] == "unseen"
        for model in ("base", "tuned"):
            mean = sum(headline[t, model] for t in tasks) / len(tasks)
            assert cell["values"][model] == pytest.approx(mean)
            ci = cell["intervals"][model]
            assert ci["lo"] < mean < ci["hi"]
        # every item is shared, so the paired delta is the plain difference of the means
        delta = sum(headline[t, "tuned"] - headline[t, "base"] for t in tasks) / len(tasks)
        assert cell["paired"]["tuned"]["delta"] == pytest.approx(delta)
    assert cells["task", "finance", "similar"]["paired"]["tuned"]["significant"]
    assert not cells["task", "finance", "novel"]["paired"]["tuned"]["significant"]

    # the Markdown table shows the same means (rounded) under its own heading, with the tasks behind each cell
    md = Path(paths["markdown"]).read_text()
    table = md.split("## FinCap capabilities - unseen", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in table.splitlines() if line.startswith("| Task") or line.startswith("|  |")]
    assert len(lines) == 2
    similar = [c.strip() for c in lines[0].strip("|").split("|")]
    mean_base = sum(headline[t, "base"] for t in ("fpb", "fiqa_sa")) / 2
    assert similar[:3] == ["Task", "finance", "similar"] and cell_number(similar[3]) == round(mean_base, 1)
    assert "]*)" in similar[4] and similar[5] == "fiqa_sa, fpb"
    page = Path(paths["html"]).read_text()
    assert "FinCap capabilities - unseen" in page and "fincap_unseen" in page
    assert "fincap_unseen.png" in {Path(p).name for p in paths["plots"]}


def test_fincap_cell_of_one_task_keeps_the_task_interval(runs, tmp_path):
    board = json.loads(Path(build_report([runs], tmp_path / "out", base="base")["json"]).read_text())
    task_rows = {r["label"]: r for r in board["rows"] if r["kind"] == "task"}
    reasoning = next(c for c in board["capabilities"] if c["capability"] == "reasoning")
    assert reasoning["tasks"] == ["cfa_easy"] and reasoning["values"] == task_rows["cfa_easy"]["values"]
    chat = next(c for c in board["capabilities"] if c["capability"] == "chat")
    assert chat["values"]["base"] == pytest.approx(4.25)  # a judge rating stays on its 1-10 scale


# ---- plots: the numbers that go into them --------------------------------------------------------------------
def write_curriculum_metrics(stage_dir: Path) -> None:
    """train/metrics.jsonl as the train loop writes it: each curriculum group counts its steps from 1."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    for phase, steps, start_loss in (("group1", 8, 10.8), ("group2", 5, 10.45)):
        for step in range(1, steps + 1):
            row = {"time": float(len(rows)), "phase": phase, "step": step, "loss": start_loss - 0.05 * step}
            if step % 2 == 0:
                row["dev_loss"] = start_loss - 0.04 * step
            rows.append(row)
    (stage_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_loss_plot_draws_one_series_per_curriculum_group(tmp_path):
    from findap.report.plots import loss_plot, loss_plot_data
    from findap.report.run_logs import loss_curves

    write_curriculum_metrics(tmp_path / "run" / "train")
    curves = loss_curves([tmp_path / "run"])
    data = loss_plot_data(curves)
    series = {s.label: s for s in data.series}
    assert list(series) == ["group1 train", "group1 dev", "group2 train", "group2 dev"]
    # group2 continues the axis after group1 instead of jumping back to step 1: no line turns back on itself
    assert series["group1 train"].x == [1, 2, 3, 4, 5, 6, 7, 8]
    assert series["group2 train"].x == [9, 10, 11, 12, 13]
    assert series["group2 dev"].x == [10, 12]
    assert series["group2 train"].y == pytest.approx([10.45 - 0.05 * s for s in range(1, 6)])
    assert all(s.x == sorted(s.x) for s in data.series)
    assert series["group1 train"].color != series["group2 train"].color
    assert data.boundaries == [(8.5, "group2")]
    assert Image.open(io.BytesIO(loss_plot(curves))).format == "PNG"


def test_a_short_loss_series_is_drawn_with_markers(tmp_path):
    from findap.report.plots import loss_plot_data
    from findap.report.run_logs import loss_curves

    align = tmp_path / "run" / "align"
    align.mkdir(parents=True)
    rows = [{"step": 0, "dev_loss": 10.75}, {"step": 1, "loss": 10.73}, {"step": 1, "dev_loss": 10.67}]
    (align / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    data = loss_plot_data(loss_curves([tmp_path / "run"]))
    train = next(s for s in data.series if s.label == "train")
    assert train.x == [1] and train.markers  # one point: a line alone would draw nothing
    assert data.boundaries == [] and data.xlabel == "step"


def test_all_zero_bars_start_the_axis_at_zero_and_missing_bars_say_so(tmp_path):
    from findap.report.leaderboard import build_leaderboard
    from findap.report.plots import MISSING, capability_figure

    for task in ("fpb", "fomc"):
        for model in ("base", "tuned"):
            write_result(tmp_path / "runs" / model / "eval" / f"{task}.json", task, "task", "finance", "similar",
                         "f1_weighted", 0.0, model)
    write_result(tmp_path / "runs" / "other" / "eval" / "fpb.json", "fpb", "task", "finance", "similar",
                 "f1_weighted", 0.0, "other")
    board = build_leaderboard(load_results([tmp_path / "runs"]), base="base")
    ax = capability_figure(board, "unseen", "task").axes[0]
    low, high = ax.get_ylim()
    assert low == 0.0 and high > 1.0  # not matplotlib's -0.055..0.055 around a collapsed line
    texts = [t.get_text() for t in ax.texts]
    assert texts.count(MISSING) == 1  # "other" has no fomc
    assert texts.count("0") == 5  # every bar that is there is 0: labelled, so it is not read as missing
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["base", "other", "tuned"]


def test_the_key_to_a_cell_is_short_lines(runs, tmp_path):
    md = Path(build_report([runs], tmp_path / "out", base="base")["markdown"]).read_text()
    head = md.split("## ", 1)[0]
    key = [line for line in head.splitlines() if line.startswith("- `")]
    assert len(key) >= 5 and all(len(line) < 140 for line in key)
    assert max(len(line) for line in head.splitlines()) < 260


def test_task_sets_are_means_across_groups_with_paired_deltas(fincap_runs, tmp_path):
    """A named set may cross the report's groups (here similar + novel finance tasks): its row is the mean of its
    tasks' headline scores, the delta is the mean of the paired task deltas, and only real gains are marked."""
    from typer.testing import CliRunner

    from findap.cli import app

    runs, headline = fincap_runs
    sets = {"gains": ["fpb", "fiqa_sa"], "flat": ["flare_german", "sm_acl"], "mixed": ["fpb", "flare_german"]}
    args = ["report", str(runs), "--out", str(tmp_path / "out"), "--base", "base"]
    for name, tasks in sets.items():
        args += ["--task-set", f"{name}={','.join(tasks)}"]
    # a set with a task that was never scored: no partial mean, and the command says so instead of leaving it out
    absent = CliRunner().invoke(app, [*args, "--task-set", "absent=fpb,arc"])
    assert absent.exit_code == 2 and "--task-set absent: no results for arc" in absent.output, absent.output
    assert not (tmp_path / "out").exists()
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    board = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    rows = {r["label"]: r for r in board["task_sets"]}
    assert list(rows) == ["gains", "flat", "mixed"]
    for name in ("gains", "flat", "mixed"):
        row, tasks = rows[name], sets[name]
        assert row["tasks"] == tasks and row["split"] == "unseen"
        for model in ("base", "tuned"):
            assert row["values"][model] == pytest.approx(sum(headline[t, model] for t in tasks) / len(tasks))
        delta = sum(headline[t, "tuned"] - headline[t, "base"] for t in tasks) / len(tasks)
        paired = row["paired"]["tuned"]
        assert paired["delta"] == pytest.approx(delta) and paired["lo"] < delta < paired["hi"]
    assert rows["gains"]["paired"]["tuned"]["significant"] and not rows["flat"]["paired"]["tuned"]["significant"]
    md = (tmp_path / "out" / "report.md").read_text()
    table = md.split("## Task sets - unseen", 1)[1].split("\n## ", 1)[0]
    assert "| gains |" in table and "| fpb, fiqa_sa |" in table
    assert "Task sets - unseen" in (tmp_path / "out" / "report.html").read_text()


@pytest.mark.parametrize("spec", ["noequals", "=fpb", "name=", "a=fpb --task-set a=fomc"])
def test_task_set_option_names_what_is_wrong(spec, tmp_path):
    from typer.testing import CliRunner

    from findap.cli import app

    args = ["report", str(tmp_path), "--out", str(tmp_path / "out")]
    for part in spec.split(" --task-set "):
        args += ["--task-set", part]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "--task-set" in result.output


# ---- skill, not format: MCC, macro-F1 and the most frequent answer ----------------------------------------------
def write_choice_result(path: Path, model: str, task: str, picks: list, gold: list, choices) -> dict:
    """A log-likelihood multiple-choice result in the runner's layout (options and both picks kept per item);
    `choices(i)` gives item i's options."""
    from findap.eval.metrics import score
    from findap.eval.registry import get_task

    spec = get_task(task).spec
    docs = [{"id": f"{task}-{i}", "gold": g, "choices": choices(i)} for i, g in enumerate(gold)]
    preds = [{"pred": p, "pred_norm": p} for p in picks]
    record = {
        "task": task, "mode": "direct", "model": model, "n": len(docs),
        "tags": {"capability": spec.capability.value, "domain": spec.domain.value, "novelty": spec.novelty.value,
                 "answer_type": spec.answer_type, "role": "unseen"},
        "scores": score(preds, docs, spec, "direct"),
        "settings": {"spec": spec.model_dump(mode="json", exclude={"description", "groups"})},
        "samples": [{"id": d["id"], "choices": d["choices"], "prediction": p, "prediction_norm": p, "gold": d["gold"]}
                    for d, p in zip(docs, picks)],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return record


@pytest.fixture
def constant_runs(tmp_path):
    """FPB with 70% neutral gold: the base model has a little skill, the tuned one says "neutral" to everything
    (weighted F1 rewards that); FiQA-SA: a real gain. The base's FPB file predates MCC and top_pred_share."""
    import numpy as np

    rng = np.random.default_rng(11)
    labels = ["positive", "neutral", "negative"]
    gold = [str(g) for g in rng.choice(labels, p=[0.15, 0.7, 0.15], size=300)]
    base = [g if rng.random() < 0.1 else str(rng.choice(labels)) for g in gold]
    runs = tmp_path / "runs"
    record = write_scored_result(runs / "base/eval/fpb.direct.json", "base", "fpb", base, gold)
    for name in ("mcc", "f1_macro", "top_pred_share"):
        record["scores"].pop(name)
    (runs / "base/eval/fpb.direct.json").write_text(json.dumps(record))
    write_scored_result(runs / "tuned/eval/fpb.direct.json", "tuned", "fpb", ["neutral"] * 300, gold)
    fiqa_gold = [str(g) for g in rng.choice(labels, size=300)]
    for model, accuracy in (("base", 0.5), ("tuned", 0.8)):
        preds = [g if rng.random() < accuracy else str(rng.choice(labels)) for g in fiqa_gold]
        write_scored_result(runs / model / "eval/fiqa_sa.direct.json", model, "fiqa_sa", preds, fiqa_gold)
    return runs, gold, base


def test_a_constant_answer_is_flagged_and_never_counts_as_a_gain(constant_runs, tmp_path):
    from sklearn.metrics import f1_score, matthews_corrcoef

    runs, gold, base_preds = constant_runs
    paths = build_report([runs], tmp_path / "out", base="base", n_boot=400, task_sets={"sentiment": ["fpb"]})
    board = json.loads(Path(paths["json"]).read_text())
    fpb = next(r for r in board["rows"] if r["label"] == "fpb")
    # the headline (weighted F1) calls the constant answer a significant gain ...
    assert fpb["metric"] == "f1_weighted" and fpb["paired"]["tuned"]["significant"]
    assert fpb["paired"]["tuned"]["delta"] > 5
    # ... its second line says what it is: MCC 0, one answer to every item
    assert fpb["top_pred"] == {"base": "positive", "tuned": "neutral"}
    assert fpb["detail_values"]["top_pred_share"]["tuned"] == pytest.approx(100.0)
    assert fpb["detail_values"]["mcc"]["tuned"] == pytest.approx(0.0)
    assert fpb["constant"] == {"tuned": ["fpb"]}
    # the base's file had no MCC: recomputed from its samples, equal to scikit-learn's, with a bootstrap interval
    base_mcc = 100 * matthews_corrcoef(gold, base_preds)
    assert fpb["detail_values"]["mcc"]["base"] == pytest.approx(base_mcc) and base_mcc > 0
    assert fpb["detail_values"]["f1_macro"]["base"] == pytest.approx(
        100 * f1_score(gold, base_preds, labels=["positive", "neutral", "negative"], average="macro"))
    ci = fpb["details"]["mcc"]["base"]
    assert ci["method"] == "bootstrap" and ci["lo"] < base_mcc < ci["hi"]
    assert fpb["details"]["top_pred_share"]["tuned"]["hi"] == pytest.approx(100.0)

    # every mean takes FPB by its MCC: the constant answer is a loss there, never a gain, and is named
    assert fpb["summary"]["metric"] == "mcc" and fpb["summary"]["paired"]["tuned"]["delta"] == pytest.approx(-base_mcc)
    sentiment = next(r for r in board["task_sets"] if r["label"] == "sentiment")
    cell = next(c for c in board["capabilities"] if c["capability"] == "task")
    average = next(r for r in board["rows"] if r["kind"] == "average")
    assert sentiment["values"]["tuned"] == pytest.approx(0.0) and sentiment["paired"]["tuned"]["delta"] < 0
    assert sentiment["metrics"] == ["mcc"] and sentiment["constant"] == {"tuned": ["fpb"]}
    for mean in (cell, average):
        assert mean["metrics"] == ["mcc", "mcc"] and mean["constant"] == {"tuned": ["fpb"]}
        fiqa = next(r for r in board["rows"] if r["label"] == "fiqa_sa")["summary"]
        assert mean["values"]["tuned"] == pytest.approx(fiqa["values"]["tuned"] / 2)
        assert mean["paired"]["tuned"]["delta"] == pytest.approx(
            (fiqa["paired"]["tuned"]["delta"] - base_mcc) / 2)

    md = Path(paths["markdown"]).read_text()
    line = next(row for row in md.splitlines() if row.startswith("|  | fpb |") or row.startswith("| Task / finance | fpb |"))
    tuned_cell = line.split("|")[5]
    assert "≡<br>MCC 0.0" in tuned_cell and "top neutral 100%" in tuned_cell and "mF1" in tuned_cell
    assert "≡" not in line.split("|")[4]
    assert "- `≡`: one answer to ≥ 90% of items" in md and "take classification tasks by MCC" in md
    assert "significantly better on fiqa_sa, fpb ≡;" in md
    fincap = md.split("## FinCap capabilities - unseen", 1)[1].split("\n## ", 1)[0]
    assert "≡ fpb" in fincap and "| sentiment |" in md.split("## Task sets - unseen", 1)[1]
    assert "| *average* | mean of mcc |" in md
    page = Path(paths["html"]).read_text()
    assert "class='const' title='one answer (neutral) to 100% of items'" in page and "<div class='det'>MCC" in page


def test_multiple_choice_over_fixed_options_gets_mcc_and_varying_options_a_letter(tmp_path):
    """BoolQ (true/false for every item) is scored like a classification: MCC and macro-F1 over the options, and
    it enters means by MCC; ARC (options differ per item) keeps accuracy and names its top answer by letter."""
    import numpy as np
    from sklearn.metrics import f1_score, matthews_corrcoef

    rng = np.random.default_rng(3)
    options = ["true", "false"]
    gold = [int(g) for g in rng.integers(0, 2, size=200)]
    arc_gold = [int(g) for g in rng.integers(0, 4, size=120)]
    picks = {}
    for model, accuracy in (("base", 0.55), ("tuned", 0.7)):
        picks[model] = [g if rng.random() < accuracy else 1 - g for g in gold]
        write_choice_result(tmp_path / "runs" / model / "eval/boolq.direct.json", model, "boolq", picks[model], gold,
                            lambda i: list(options))
        arc = [0 if model == "tuned" else (g if rng.random() < 0.3 else int(rng.integers(0, 4))) for g in arc_gold]
        write_choice_result(tmp_path / "runs" / model / "eval/arc.direct.json", model, "arc", arc, arc_gold,
                            lambda i: [f"{i}: {c}" for c in "wxyz"])
    board = json.loads(Path(build_report([tmp_path / "runs"], tmp_path / "out", base="base",
                                         n_boot=300)["json"]).read_text())
    rows = {r["label"]: r for r in board["rows"] if r["kind"] == "task"}
    boolq, arc = rows["boolq"], rows["arc"]
    for model in ("base", "tuned"):
        g, p = [options[x] for x in gold], [options[x] for x in picks[model]]
        assert boolq["detail_values"]["mcc"][model] == pytest.approx(100 * matthews_corrcoef(g, p))
        assert boolq["detail_values"]["f1_macro"][model] == pytest.approx(
            100 * f1_score(g, p, labels=options, average="macro"))
        assert boolq["top_pred"][model] in options
    assert boolq["metric"] == "acc" and boolq["summary"]["metric"] == "mcc"
    reasoning = next(c for c in board["capabilities"] if c["capability"] == "reasoning")
    assert reasoning["metrics"] == ["mcc"] and reasoning["values"] == boolq["summary"]["values"]
    assert "mcc" not in arc["detail_values"] and arc["summary"] is None
    assert arc["top_pred"]["tuned"] == "A" and arc["constant"] == {"tuned": ["arc"]}
    concept = next(c for c in board["capabilities"] if c["capability"] == "concept")
    assert concept["metrics"] == ["acc"] and concept["constant"] == {"tuned": ["arc"]}


# ---- many comparisons: how many, and Holm / Benjamini-Hochberg marks ---------------------------------------------
def _tests(board: dict) -> list[dict]:
    """Every paired test of the tuned model the board shows, as JSON."""
    shown = [r for r in board["rows"]] + board["capabilities"] + board["task_sets"]
    return [r["paired"]["tuned"] for r in shown if r["paired"].get("tuned")]


def test_the_report_counts_its_comparisons_and_adjusts_the_marks(fincap_runs, tmp_path):
    from findap.eval.uncertainty import adjust_p_values

    runs, _ = fincap_runs
    sets = {"similar": ["fpb", "fiqa_sa"], "all": ["fpb", "fiqa_sa", "flare_german", "sm_acl"]}
    boards, pages = {}, {}
    for adjust in ("none", "holm", "bh"):
        paths = build_report([runs], tmp_path / adjust, base="base", n_boot=400, task_sets=sets, adjust=adjust)
        boards[adjust] = json.loads(Path(paths["json"]).read_text())
        pages[adjust] = Path(paths["markdown"]).read_text()
    # 4 task rows (weighted F1), 2 FinCap cells (MCC means), 1 task set ("similar" is the similar cell again);
    # the two average rows repeat their FinCap cells
    expected = {"total": 7, "task rows": 4, "FinCap cells": 2, "task sets": 1, "averages": 0}
    assert all(b["comparisons"] == expected for b in boards.values())
    assert "Comparisons: 7 paired tests against base (4 task rows, 2 FinCap cells, 1 task set;" in pages["none"]
    assert "(--adjust none)" in pages["none"] and "excludes zero" in pages["none"]
    assert "Holm-adjusted p ≤ 0.05 over all 7 tests (--adjust holm)" in pages["holm"]
    assert "significant after Holm's adjustment" in pages["holm"]
    assert "Benjamini-Hochberg adjusted p ≤ 0.05 over all 7 tests (--adjust bh)" in pages["bh"]

    none = _tests(boards["none"])
    assert all(t["p_adjusted"] is None and t["adjust"] == "none" for t in none)
    distinct = {}  # the family: one p-value per distinct test, in the order the tables show them
    for t in none:
        distinct.setdefault((t["delta"], t["lo"], t["hi"]), t["p_value"])
    assert len(distinct) == 7
    for method in ("holm", "bh"):
        tests = _tests(boards[method])
        assert [t["p_value"] for t in tests] == [t["p_value"] for t in none]  # the bootstrap is the same
        want = dict(zip(distinct, adjust_p_values(list(distinct.values()), method)))
        for t, plain in zip(tests, none):
            assert t["adjust"] == method and t["p_adjusted"] == pytest.approx(want[t["delta"], t["lo"], t["hi"]])
            assert t["significant"] <= plain["significant"]  # adjusted marks are a subset
            assert t["significant"] == (plain["significant"] and t["p_adjusted"] <= 0.05)
    # the similar tasks gain by far: still marked after either adjustment; the novel ones are not
    for method in ("holm", "bh"):
        cells = {c["novelty"]: c["paired"]["tuned"] for c in boards[method]["capabilities"]}
        assert cells["similar"]["significant"] and not cells["novel"]["significant"]

    # too few resamples for the family: the report says so
    md = Path(build_report([runs], tmp_path / "few", base="base", n_boot=100, adjust="holm")["markdown"]).read_text()
    assert "With 100 resamples no p-value is below 0.0198 > 0.05/6: a single difference needs n_boot ≥ 240" in md


def test_the_adjustment_is_checked_and_the_report_stage_takes_it_from_the_recipe(fincap_runs, tmp_path):
    from types import SimpleNamespace

    from pydantic import ValidationError

    from findap.report.multiplicity import parse_adjust
    from findap.recipe import Recipe
    from findap.report import stage as report_stage
    from findap.report.config import ReportConfig

    runs, _ = fincap_runs
    assert parse_adjust(" BH ") == "bh" and parse_adjust("none") == "none"
    with pytest.raises(ValueError, match="none, holm, bh"):
        build_report([runs], tmp_path / "out", base="base", adjust="bonferroni")
    with pytest.raises(ValidationError):
        ReportConfig(adjust="bonferroni")
    recipe = Recipe(name="demo", runs_dir=str(tmp_path / "runs-dir"))
    with_report = SimpleNamespace(name=recipe.name, run_dir=recipe.run_dir, eval=recipe.eval,
                                  report=ReportConfig(adjust="holm", n_boot=200))
    ctx = SimpleNamespace(inputs={"runs": [runs]}, dir=tmp_path / "stage")
    summary = report_stage.run(with_report, ctx)
    board = json.loads(Path(summary["outputs"]["json"]).read_text())
    assert summary["adjust"] == board["adjust"] == "holm" and board["n_boot"] == 200
    # a recipe without a report section reports with the defaults
    summary = report_stage.run(recipe, SimpleNamespace(inputs={"runs": [runs]}, dir=tmp_path / "plain"))
    board = json.loads(Path(summary["outputs"]["json"]).read_text())
    assert board["adjust"] == "none" and board["n_boot"] == ReportConfig().n_boot


def test_findap_report_takes_the_adjust_option(fincap_runs, tmp_path):
    from typer.testing import CliRunner

    from findap.cli import app

    if "--adjust" not in CliRunner().invoke(app, ["report", "--help"]).output:
        pytest.skip("findap report has no --adjust option yet (src/findap/cli.py)")
    runs, _ = fincap_runs
    result = CliRunner().invoke(app, ["report", str(runs), "--out", str(tmp_path / "out"), "--base", "base",
                                      "--adjust", "bh"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "out" / "leaderboard.json").read_text())["adjust"] == "bh"
    result = CliRunner().invoke(app, ["report", str(runs), "--out", str(tmp_path / "x"), "--adjust", "bonferroni"])
    assert result.exit_code == 2 and "--adjust" in result.output


def test_a_task_set_is_shown_in_every_mode_its_tasks_were_scored_in(runs, tmp_path):
    """`--task-set finance=fpb,fomc` over results scored directly and by log-likelihood gives one row per mode
    (`finance`, `finance (loglik)`); a set whose tasks were scored only by log-likelihood was shown nowhere before."""
    for task, cap, dom, nov, metric, values in RESULTS[:2]:
        for model, value in values.items():
            write_result(tmp_path / "runs" / model / "eval" / f"{task}.loglik.json", task, cap, dom, nov, metric,
                         value / 2, model, mode="loglik")
    paths = build_report([tmp_path / "runs"], tmp_path / "out", base="base", n_boot=200,
                         task_sets={"finance": ["fpb", "fomc"], "mc_only": ["fpb"]})
    board = json.loads(Path(paths["json"]).read_text())
    rows = {r["label"]: r for r in board["task_sets"]}
    assert set(rows) == {"finance", "finance (loglik)", "mc_only", "mc_only (loglik)"}
    assert rows["finance (loglik)"]["tasks"] == ["fpb (loglik)", "fomc (loglik)"]
    assert rows["finance (loglik)"]["values"]["tuned"] == pytest.approx(rows["finance"]["values"]["tuned"] / 2)


def test_two_runs_trained_models_of_one_name_are_both_shown(tmp_path):
    """Two recipes' runs both call their trained model `cpt_it`: the report shows `<run>/cpt_it` for each, with
    its own scores (before, the later file silently replaced the other run's), and keeps the base model both runs
    scored (the same weights) as one `base`. The real runner writes the files."""
    from findap.engines.base import EngineSpec
    from findap.engines.hf import HFEngine
    from findap.eval.registry import resolve
    from findap.eval.runner import evaluate
    from findap.eval.task import Task
    from findap.models import tiny_llama

    task = Task(resolve(["arc"])[0])
    scores = {}
    for run, seed in (("recipe-a", 1), ("recipe-b", 2)):
        for label, model_seed in (("base", 0), ("cpt_it", seed)):
            model, tok = tiny_llama(seed=model_seed)
            engine = HFEngine(EngineSpec(model=label, device="cpu", precision="fp32", batch_size=8),
                              model=model, tokenizer=tok)
            out = tmp_path / run / "eval" / label  # the eval stage's layout: one folder per model
            evaluate(engine, [task], limit=12, out_dir=out, model_name=label, progress=False)
            scores[(run, label)] = json.loads((out / "arc.direct.json").read_text())["scores"]["acc"]
    notes: list[str] = []
    results = load_results([tmp_path / "recipe-a", tmp_path / "recipe-b"], notes)
    by_label = {r.model: r for r in results}
    assert set(by_label) == {"base", "recipe-a/cpt_it", "recipe-b/cpt_it"}
    for run in ("recipe-a", "recipe-b"):
        assert by_label[f"{run}/cpt_it"].scores["acc"] == scores[(run, "cpt_it")]
    assert notes == ["`cpt_it` names different weights in different runs: shown as recipe-a/cpt_it, recipe-b/cpt_it"]
    paths = build_report([tmp_path / "recipe-a", tmp_path / "recipe-b"], tmp_path / "out", base="recipe-a/cpt_it")
    board = json.loads(Path(paths["json"]).read_text())
    row = next(r for r in board["rows"] if r["kind"] == "task")
    assert set(row["values"]) == {"base", "recipe-a/cpt_it", "recipe-b/cpt_it"}
    assert row["deltas"]["recipe-b/cpt_it"] == pytest.approx(
        row["values"]["recipe-b/cpt_it"] - row["values"]["recipe-a/cpt_it"])
