"""No stale or mislabelled result: results are keyed by the weights' content and the task data, result files carry
their provenance, and `findap run` reruns a finished stage whose inputs changed (and only then)."""
import json
import shutil

import pytest
import yaml
from typer.testing import CliRunner

from findap.cli import app
from findap.engines import make_engine
from findap.engines.base import EngineSpec
from findap.eval.runner import evaluate
from findap.io import write_parquet
from findap.models import save_tiny_llama
from findap.pipeline import run_recipe
from findap.provenance import model_fingerprint
from findap.recipe import load_recipe
from helpers.sample_data import fpb_conversations


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def result(out, label, task="cfa_easy"):
    return json.loads((out / label / f"{task}.direct.json").read_text())


# ---- the model fingerprint ------------------------------------------------------------------------------------------
def test_fingerprint_follows_the_weights_not_the_path(tmp_path):
    a = save_tiny_llama(tmp_path / "a" / "ckpt", seed=0)
    b = save_tiny_llama(tmp_path / "b" / "ckpt", seed=1)
    copy = shutil.copytree(a, tmp_path / "elsewhere")
    assert model_fingerprint(a) != model_fingerprint(b)
    assert model_fingerprint(a) == model_fingerprint(copy)
    save_tiny_llama(a, seed=1)  # a retrain at the same path
    assert model_fingerprint(a) == model_fingerprint(b)


# ---- findap eval --model ------------------------------------------------------------------------------------------
def test_two_models_in_folders_of_the_same_name_keep_separate_results(tmp_path):
    a = save_tiny_llama(tmp_path / "exp1" / "ckpt", seed=0)
    b = save_tiny_llama(tmp_path / "exp2" / "ckpt", seed=1)
    out = tmp_path / "o"
    res = invoke("eval", "--model", a, "--model", b, "--tasks", "cfa_easy", "--limit", 3, "--out", out)
    assert res.exit_code == 0, res.output
    first, second = result(out, "exp1--ckpt"), result(out, "exp2--ckpt")
    assert first["settings"]["model_fingerprint"] != second["settings"]["model_fingerprint"]
    assert [s["logprobs"] for s in first["samples"]] != [s["logprobs"] for s in second["samples"]]
    assert not (out / "ckpt").exists()


def test_the_same_model_twice_is_refused_before_loading(tmp_path):
    a = save_tiny_llama(tmp_path / "m", seed=0)
    res = invoke("eval", "--model", a, "--model", a, "--tasks", "fpb", "--out", tmp_path / "o")
    assert res.exit_code == 2 and "given twice" in res.output
    assert not (tmp_path / "o").exists()


def test_new_weights_at_the_same_path_are_scored_anew(tmp_path):
    model = save_tiny_llama(tmp_path / "m", seed=0)
    out = tmp_path / "o"
    assert invoke("eval", "--model", model, "--tasks", "cfa_easy", "--limit", 3, "--out", out).exit_code == 0
    before = result(out, "m")
    save_tiny_llama(model, seed=3)  # retrained in place
    assert invoke("eval", "--model", model, "--tasks", "cfa_easy", "--limit", 3, "--out", out).exit_code == 0
    after = result(out, "m")
    assert after["settings"]["model_fingerprint"] == model_fingerprint(model) != before["settings"]["model_fingerprint"]
    assert [s["logprobs"] for s in after["samples"]] != [s["logprobs"] for s in before["samples"]]
    summary = json.loads((out / "m" / "summary.json").read_text())
    assert summary["model_fingerprint"] == model_fingerprint(model)


def test_unchanged_weights_reuse_the_finished_result_and_force_scores_anew(tmp_path, monkeypatch):
    model = save_tiny_llama(tmp_path / "m", seed=0)
    out = tmp_path / "o"
    assert invoke("eval", "--model", model, "--tasks", "fpb", "--limit", 2, "--out", out).exit_code == 0
    path = out / "m" / "fpb.direct.json"
    written = path.stat().st_mtime_ns
    assert invoke("eval", "--model", model, "--tasks", "fpb", "--limit", 2, "--out", out).exit_code == 0
    assert path.stat().st_mtime_ns == written  # read back, not rewritten
    calls = []
    from findap.engines.hf import HFEngine

    original = HFEngine.generate_with_tokens
    monkeypatch.setattr(HFEngine, "generate_with_tokens",
                        lambda self, reqs, progress=True: calls.append(len(reqs)) or original(self, reqs, progress))
    res = invoke("eval", "--model", model, "--tasks", "fpb", "--limit", 2, "--out", out, "--force")
    assert res.exit_code == 0, res.output
    assert calls == [2] and path.stat().st_mtime_ns != written


def test_result_files_carry_their_provenance(tmp_path, tiny_model_dir):
    engine = make_engine(EngineSpec(kind="hf", model=tiny_model_dir, precision="fp32"))
    evaluate(engine, ["fpb"], limit=3, out_dir=tmp_path, progress=False)
    record = json.loads((tmp_path / "fpb.direct.json").read_text())
    prov = record["provenance"]
    assert prov["model_fingerprint"] == model_fingerprint(tiny_model_dir) == record["settings"]["model_fingerprint"]
    assert len(prov["data_hash"]) == 16 and prov["n"] == 3 and prov["findap"] and prov["date"]
    assert "commit" in prov  # the tests run from a git checkout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["n"]["fpb"]["direct"] == 3
    assert summary["uncertainty"]["fpb"]["direct"]["acc"]["n"] == 3
    assert summary["model_fingerprint"] == prov["model_fingerprint"] and summary["skipped"] == {}


def test_changed_task_data_is_scored_anew(tmp_path, tiny_model_dir):
    rows = [{"id": f"s{i}", "sentence": f"Profit rose {i}%.", "label": "positive"} for i in range(4)]
    data = tmp_path / "sent.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    spec = tmp_path / "mysent.yaml"
    spec.write_text(yaml.safe_dump({
        "name": "mysent", "capability": "task", "domain": "finance", "novelty": "novel",
        "answer_type": "classification", "labels": ["positive", "negative"], "metrics": ["acc"],
        "source": {"loader": "jsonl", "args": {"path": str(data), "fields": {"text": "sentence"}}},
        "prompt": {"instruction": "Say whether this is good or bad news.", "input": "Sentence: {text}"},
        "carve": {"train": 0.0, "dev": 0.0, "unseen": 1.0}}))
    engine = make_engine(EngineSpec(kind="hf", model=tiny_model_dir, precision="fp32"))
    evaluate(engine, [str(spec)], limit=4, out_dir=tmp_path / "o", progress=False)
    first = json.loads((tmp_path / "o" / "mysent.direct.json").read_text())
    rows[0]["label"] = "negative"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    evaluate(engine, [str(spec)], limit=4, out_dir=tmp_path / "o", progress=False)
    second = json.loads((tmp_path / "o" / "mysent.direct.json").read_text())
    assert first["settings"]["data_hash"] != second["settings"]["data_hash"]
    assert [s["gold"] for s in second["samples"]].count("negative") == 1


def test_a_limit_below_one_is_refused(tmp_path, tiny_model_dir):
    res = invoke("eval", "--model", tiny_model_dir, "--tasks", "fpb", "--limit", 0, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "--limit" in res.output
    engine = make_engine(EngineSpec(kind="hf", model=tiny_model_dir, precision="fp32"))
    with pytest.raises(ValueError, match="limit must be at least 1"):
        evaluate(engine, ["fpb"], limit=0, out_dir=tmp_path / "o", progress=False)


# ---- hub-only tasks under prefer: local ---------------------------------------------------------------------------
def test_prefer_local_never_reaches_for_the_hub_and_a_skip_fails_the_command(tmp_path, tiny_model_dir, monkeypatch):
    import datasets

    def no_network(*args, **kwargs):
        raise AssertionError("prefer: local touched the hub")

    monkeypatch.setattr(datasets, "load_dataset", no_network)
    out = tmp_path / "o"
    res = invoke("eval", "--model", tiny_model_dir, "--tasks", "fpb,fiqa_sa", "--limit", 2, "--out", out)
    assert res.exit_code == 1, res.output
    assert "fiqa_sa" in res.output and "--allow-skips" in res.output
    label = next(p for p in out.iterdir() if p.is_dir()).name
    summary = json.loads((out / label / "summary.json").read_text())
    assert "fiqa_sa" in summary["skipped"] and set(summary["results"]) == {"fpb"}
    res = invoke("eval", "--model", tiny_model_dir, "--tasks", "fpb,fiqa_sa", "--limit", 2, "--out", out,
                 "--allow-skips")
    assert res.exit_code == 0, res.output


# ---- findap run: stages track their inputs ---------------------------------------------------------------------------
SMALL_TRAIN = {"seq_len": 128, "micro_batch_tokens": 256, "tokens_per_step": 256, "eval_every": 2,
               "checkpoint_every": 2, "progress": False, "tensorboard": False, "dev_max_docs": 2}


@pytest.fixture
def train_eval_recipe(tmp_path):
    model = save_tiny_llama(tmp_path / "base", seed=2)
    rows = [{"text": None, **r} for r in fpb_conversations(8)]
    write_parquet(tmp_path / "train.parquet", rows[:6])
    write_parquet(tmp_path / "dev.parquet", rows[6:])
    recipe = {"name": "r", "model": model, "runs_dir": str(tmp_path / "runs"), "device": "cpu", "precision": "fp32",
              "stages": ["train", "eval"],
              "train": {**SMALL_TRAIN, "groups": [{"name": "g", "lr": 2e-3, "max_steps": 2,
                                                   "train": [str(tmp_path / "train.parquet")],
                                                   "dev": [str(tmp_path / "dev.parquet")]}]},
              "eval": {"tasks": ["fpb"], "limit": 2, "include": ["cpt_it"]}}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def eval_fingerprint(recipe):
    return result(recipe.run_dir / "eval", "cpt_it", "fpb")["settings"]["model_fingerprint"]


def test_a_retrain_makes_run_rescore_the_model_without_force(train_eval_recipe, capsys):
    recipe = load_recipe(train_eval_recipe)
    run_recipe(recipe, isolate=False)
    first = eval_fingerprint(recipe)
    assert first == model_fingerprint(recipe.run_dir / "train" / "model")
    run_recipe(recipe, isolate=False)
    assert "already done with these inputs" in capsys.readouterr().err
    changed = load_recipe(train_eval_recipe, ["train.groups.0.lr=5e-3"])
    run_recipe(changed, isolate=False)
    err = capsys.readouterr().err
    assert "train: the recipe's train section" in err and "re-running" in err
    assert "eval: model cpt_it changed since it ran, re-running" in err
    second = eval_fingerprint(changed)
    assert second != first and second == model_fingerprint(changed.run_dir / "train" / "model")


def test_a_changed_eval_section_reruns_eval_and_keeps_no_stale_task(train_eval_recipe, capsys):
    recipe = load_recipe(train_eval_recipe, ["stages=[eval]", "eval.include=[base]"])
    run_recipe(recipe, isolate=False)
    out = recipe.run_dir / "eval" / "base"
    assert (out / "fpb.direct.json").exists()
    changed = load_recipe(train_eval_recipe, ["stages=[eval]", "eval.include=[base]", "eval.tasks=[fomc]"])
    run_recipe(changed, isolate=False)
    assert "eval: the recipe's eval section" in capsys.readouterr().err
    assert (out / "fomc.direct.json").exists() and not (out / "fpb.direct.json").exists()
    assert (recipe.run_dir / "eval" / "cache.sqlite").exists()  # content-keyed request cache kept


def test_force_stage_clears_its_outputs_not_only_the_marker(train_eval_recipe):
    recipe = load_recipe(train_eval_recipe, ["stages=[eval]", "eval.include=[base]"])
    run_recipe(recipe, isolate=False)
    stray = recipe.run_dir / "eval" / "base" / "stray.direct.json"
    stray.write_text("{}")
    res = invoke("run", train_eval_recipe, "--set", "stages=[eval]", "--set", "eval.include=[base]",
                 "--force", "eval")
    assert res.exit_code == 0, res.output
    assert not stray.exists() and (recipe.run_dir / "eval" / "base" / "fpb.direct.json").exists()
    res = invoke("run", train_eval_recipe, "--force", "trian")
    assert res.exit_code == 2 and "--force trian" in res.output


def test_dry_run_says_which_finished_stage_reruns_and_why(train_eval_recipe):
    recipe = load_recipe(train_eval_recipe, ["stages=[eval]", "eval.include=[base]"])
    run_recipe(recipe, isolate=False)
    res = invoke("run", train_eval_recipe, "--set", "stages=[eval]", "--set", "eval.include=[base]", "--dry-run")
    assert "eval: done, skipped (inputs unchanged" in res.output
    res = invoke("run", train_eval_recipe, "--set", "stages=[eval]", "--set", "eval.include=[base]",
                 "--set", "eval.limit=3", "--dry-run")
    assert res.exit_code == 0 and "eval: reruns (the recipe's eval section" in res.output
