"""evaluate() end to end on a real tiny Llama (real SmolLM2 tokenizer) through the hf engine: per-task JSON,
scores that match a recomputation from the saved samples, resume from the request cache, judge answers, stage."""
from __future__ import annotations

import json

import pytest

from findap.engines import EngineSpec, make_engine
from findap.eval.metrics import tatqa_em_f1
from findap.eval.registry import get_task
from findap.eval.runner import evaluate
from helpers.eval_setup import short_task, tiny_engine


@pytest.fixture(scope="module")
def direct_run(tiny_model_dir, shared_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    engine = tiny_engine(tiny_model_dir, out / "cache.sqlite")
    tasks = [short_task("fpb", shared_data, max_new_tokens=8), get_task("cfa_easy", root=shared_data),
             short_task("tatqa", shared_data, max_new_tokens=8)]
    result = evaluate(engine, tasks, mode="direct", limit=8, out_dir=out / "run", progress=False)
    return out, tasks, result, engine


def test_evaluate_writes_per_task_json_and_summary(direct_run):
    out, tasks, result, _ = direct_run
    summary = json.loads((out / "run" / "summary.json").read_text())
    assert set(summary["results"]) == {"fpb", "cfa_easy", "tatqa"}
    assert summary["tags"]["cfa_easy"]["capability"] == "reasoning"
    for task in tasks:
        rec = json.loads((out / "run" / f"{task.name}.direct.json").read_text())
        assert rec["n"] == 8 and len(rec["samples"]) == 8
        assert rec["scores"] == result["results"][task.name] == summary["results"][task.name]["direct"]
        for s in rec["samples"]:
            assert {"id", "prompt", "prediction", "gold"} <= set(s)
        # scored items are the seeded first 8 of the task's own split role, never its few-shot pool
        assert [s["id"] for s in rec["samples"]] == [d["id"] for d in task.docs(limit=8)]


def test_scores_match_a_recomputation_from_the_samples(direct_run):
    from sklearn.metrics import accuracy_score, f1_score

    out, _, _, _ = direct_run
    fpb = json.loads((out / "run" / "fpb.direct.json").read_text())
    gold = [s["gold"] for s in fpb["samples"]]
    pred = [s["prediction"] or "missing" for s in fpb["samples"]]
    assert fpb["scores"]["acc"] == pytest.approx(accuracy_score(gold, pred))
    assert fpb["scores"]["f1_weighted"] == pytest.approx(
        f1_score(gold, pred, labels=["positive", "neutral", "negative"], average="weighted", zero_division=0))
    assert all(s["prompt"][-1]["role"] == "user" and "Sentence:" in s["prompt"][-1]["content"] for s in fpb["samples"])

    cfa = json.loads((out / "run" / "cfa_easy.direct.json").read_text())
    for s in cfa["samples"]:
        lls = s["logprobs"]
        assert len(lls) == 3 and all(ll < 0 for ll in lls)
        assert s["prediction"] == max(range(3), key=lambda i: lls[i])
        assert s["prediction_norm"] == max(range(3), key=lambda i: lls[i] / len(s["choices"][i]))
    assert cfa["scores"]["acc"] == pytest.approx(sum(s["prediction"] == s["gold"] for s in cfa["samples"]) / 8)
    assert cfa["scores"]["acc_norm"] == pytest.approx(sum(s["prediction_norm"] == s["gold"] for s in cfa["samples"]) / 8)

    tatqa = json.loads((out / "run" / "tatqa.direct.json").read_text())
    docs = {d["id"]: d for d in get_task("tatqa").all_docs}
    ems = [tatqa_em_f1(s["prediction"]["answer"], s["prediction"]["scale"], docs[s["id"]]["gold_raw"],
                       docs[s["id"]]["gold_type"], docs[s["id"]]["scale"])[0] for s in tatqa["samples"]]
    assert tatqa["scores"]["tatqa_em"] == pytest.approx(sum(ems) / 8)


def test_killed_evaluation_resumes_from_the_request_cache(direct_run, tiny_model_dir):
    out, tasks, result, _ = direct_run
    for task in tasks:  # as if the run died before writing its task files
        (out / "run" / f"{task.name}.direct.json").unlink()
    fresh = tiny_engine(tiny_model_dir, out / "cache.sqlite")
    again = evaluate(fresh, tasks, mode="direct", limit=8, out_dir=out / "run", progress=False)
    assert fresh.model_calls == 0  # every request answered by the cache
    assert again["results"] == result["results"]
    # finished task files are reused as they are; a different limit is a different evaluation
    evaluate(fresh, tasks[:1], mode="direct", limit=8, out_dir=out / "run", progress=False)
    assert fresh.model_calls == 0
    evaluate(fresh, tasks[:1], mode="direct", limit=9, out_dir=out / "run", progress=False)
    assert fresh.model_calls > 0


def test_cot_mode_and_judge_answers(direct_run, tiny_model_dir, shared_data):
    out, _, _, engine = direct_run
    cfa = short_task("cfa_easy", shared_data, cot_max_new_tokens=16)
    mt = short_task("mt_bench", shared_data, max_new_tokens=8, cot_max_new_tokens=8)
    res = evaluate(engine, [cfa, mt], mode="cot", limit=2, out_dir=out / "cot", progress=False)
    rec = json.loads((out / "cot" / "cfa_easy.cot.json").read_text())
    assert "Think step by step" in rec["samples"][0]["prompt"][-1]["content"]
    assert set(rec["scores"]) == {"acc", "missing", "top_pred_share"}
    judge = json.loads((out / "cot" / "mt_bench.cot.json").read_text())
    assert judge["needs_judge"] and judge["scores"] == {} and res["results"]["mt_bench"] == {}
    sample = judge["samples"][0]
    assert len(sample["answers"]) == 2
    # turn 2 is asked after the model's own turn-1 answer
    assert [m["role"] for m in sample["prompt"]] == ["user", "assistant", "user"]
    assert sample["prompt"][1]["content"] == sample["answers"][0]


def test_eval_stage_runs_recipe_models(tiny_model_dir, tmp_path):
    from findap.eval import stage
    from findap.eval.config import EvalConfig
    from findap.recipe import Recipe
    from findap.runs import StageContext

    recipe = Recipe(name="t", model=tiny_model_dir, runs_dir=str(tmp_path), device="cpu", precision="fp32",
                    eval=EvalConfig(tasks=["fpb"], limit=3, engine={"batch_size": 4}))
    ctx = StageContext(run_dir=recipe.run_dir, name="eval", inputs={"models": {"base": tiny_model_dir}})
    summary = stage.run(recipe, ctx)
    assert set(summary["results"]["base"]["direct"]) == {"fpb"}
    rec = json.loads((ctx.dir / "base" / "fpb.direct.json").read_text())
    assert rec["n"] == 3 and rec["model"] == "base"
    logged = [json.loads(line) for line in (ctx.dir / "metrics.jsonl").read_text().splitlines()]
    assert logged[0]["task"] == "fpb" and "acc" in logged[0]


def test_evaluate_models_for_the_cli(tiny_model_dir, tmp_path):
    from findap.eval.stage import evaluate_models
    from findap.models import model_label

    import yaml

    spec = get_task("cfa_easy").spec.model_copy(update={"cot_max_new_tokens": 8})
    path = tmp_path / "cfa_easy.yaml"  # a task given as a YAML path, with a small CoT budget for speed
    path.write_text(yaml.safe_dump(spec.model_dump(mode="json")))
    res = evaluate_models([tiny_model_dir], tasks=[str(path)], mode="both", limit=2, out_dir=tmp_path,
                          device="cpu", precision="fp32")
    label = model_label(tiny_model_dir)
    assert set(res[label]) == {"direct", "cot"}
    folder = tmp_path / label.replace("/", "--")
    assert (folder / "cfa_easy.direct.json").exists() and (folder / "cfa_easy.cot.json").exists()
    with pytest.raises(ValueError, match="direct, cot or both"):
        evaluate_models([tiny_model_dir], tasks=["cfa_easy"], mode="fast", out_dir=tmp_path)


@pytest.mark.slow
def test_embedded_model_gives_parsable_answers(shared_data, tmp_path):
    """The real SmolLM2-135M-Instruct: FPB labels are extracted from its replies and CFA multiple choice beats
    a model that always picks the same option's log-likelihood (sanity, not a quality bar)."""
    engine = make_engine(EngineSpec(kind="hf", model="smollm2-135m-instruct", batch_size=8,
                                    cache_path=str(tmp_path / "cache.sqlite")))
    res = evaluate(engine, ["fpb", "cfa_easy"], mode="direct", limit=16, out_dir=tmp_path, progress=False)
    assert res["results"]["fpb"]["missing"] < 0.5
    rec = json.loads((tmp_path / "cfa_easy.direct.json").read_text())
    assert len({s["prediction"] for s in rec["samples"]}) > 1  # the scores depend on the options
