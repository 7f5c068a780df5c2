"""Every flag of every `findap` command either applies or is an error; one recipe loader for every entry point
(`findap train`, `python -m findap train`, `python -m findap.train`, `torchrun -m findap train`)."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from findap.cli import app

REPO = Path(__file__).resolve().parents[1]
SRC = str(REPO / "src")


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


def write_recipe(tmp_path, **fields):
    recipe = {"name": "r", "runs_dir": str(tmp_path / "runs"), "device": "cpu", "precision": "fp32", **fields}
    path = tmp_path / f"{recipe['name']}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def saved_config(tmp_path, stage):
    return yaml.safe_load((tmp_path / "runs" / "r" / stage / "config.yaml").read_text())


# ---- findap eval RECIPE: the task flags set the recipe's eval section ------------------------------------------------
def test_eval_recipe_flags_reach_the_stage(tmp_path):
    # eval disabled: the stage starts (and saves the recipe it ran with) but scores nothing, so this is fast
    recipe = write_recipe(tmp_path, stages=["eval"], eval={"enabled": False})
    res = invoke("eval", recipe, "--limit", 5, "--tasks", "fpb,cfa_easy", "--mode", "both", "--split", "dev",
                 "--few-shot", 2, "--batch-size", 3, "--judge-model", "judge-x", "--judge-engine", "hf")
    assert res.exit_code == 0, res.output
    cfg = saved_config(tmp_path, "eval")["eval"]
    assert (cfg["limit"], cfg["tasks"], cfg["modes"], cfg["split"], cfg["few_shot"], cfg["engine"]["batch_size"]) == (
        5, ["fpb", "cfa_easy"], ["direct", "cot"], "dev", 2, 3)
    assert (cfg["judge"]["engine"]["model"], cfg["judge"]["engine"]["kind"]) == ("judge-x", "hf")


def test_eval_recipe_set_wins_over_a_flag_and_defaults_stay_the_recipes(tmp_path):
    recipe = write_recipe(tmp_path, stages=["eval"], eval={"enabled": False, "limit": 7, "engine": {"batch_size": 9}})
    res = invoke("eval", recipe, "--limit", 5, "--set", "eval.limit=6")
    assert res.exit_code == 0, res.output
    cfg = saved_config(tmp_path, "eval")["eval"]
    assert (cfg["limit"], cfg["engine"]["batch_size"]) == (6, 9)  # --batch-size not given: the recipe's 9, not 16


def test_eval_recipe_scores_only_the_flagged_task_and_items(tmp_path, tiny_model_dir):
    recipe = write_recipe(tmp_path, model=tiny_model_dir, stages=["eval"], eval={"include": ["base"]})
    res = invoke("eval", recipe, "--tasks", "fpb", "--limit", 2, "--batch-size", 2)
    assert res.exit_code == 0, res.output
    out = tmp_path / "runs" / "r" / "eval" / "base"
    assert sorted(p.name for p in out.glob("*.json") if p.name != "summary.json") == ["fpb.direct.json"]
    assert json.loads((out / "fpb.direct.json").read_text())["n"] == 2


@pytest.mark.parametrize("args, flag", [
    (["--out", "x"], "--out"),
    (["--model", "m"], "--model"),
])
def test_eval_recipe_refuses_model_only_flags(tmp_path, args, flag):
    res = invoke("eval", write_recipe(tmp_path, stages=["eval"]), *args)
    assert res.exit_code == 2 and flag in res.output and "only with --model" in res.output


@pytest.mark.parametrize("args, flag", [
    (["--set", "seed=1"], "--set"),
    (["--dry-run"], "--dry-run"),
    (["--judge-engine", "hf"], "--judge-engine"),
    (["--judge-key-env", "K"], "--judge-key-env"),
])
def test_eval_model_refuses_recipe_or_judge_flags(args, flag):
    res = invoke("eval", "--model", "smollm2-135m-instruct", *args)
    assert res.exit_code == 2 and flag in res.output


def test_eval_list_takes_nothing_else():
    res = invoke("eval", "--list", "--limit", 3)
    assert res.exit_code == 2 and "--limit" in res.output


def test_eval_mode_is_checked_before_any_work(tmp_path):
    res = invoke("eval", write_recipe(tmp_path, stages=["eval"]), "--mode", "both,plain")
    assert res.exit_code == 2 and "--mode" in res.output


# ---- findap run --only, --dry-run ---------------------------------------------------------------------------------
def test_run_only_names_a_stage_of_the_recipe(tmp_path):
    recipe = write_recipe(tmp_path, stages=["eval", "report"])
    for bad in ("trian", "train"):  # a typo, and a stage this recipe does not run: both used to run nothing
        res = invoke("run", recipe, "--only", bad)
        assert res.exit_code == 2 and f"--only {bad}" in res.output and "eval, report" in res.output
    assert not (tmp_path / "runs").exists()


def test_dry_run_validates_and_starts_nothing(tmp_path):
    recipe = write_recipe(tmp_path, stages=["train", "eval"],
                          train={"groups": [{"name": "g", "train": [str(tmp_path / "missing.jsonl")]}]})
    res = invoke("run", recipe, "--dry-run")
    assert res.exit_code == 2 and "train.groups[g].train:" in res.output and "missing.jsonl does not exist" in res.output
    (tmp_path / "missing.jsonl").write_text("")
    res = invoke("run", recipe, "--dry-run", "--set", "eval.limit=3")
    assert res.exit_code == 0, res.output
    assert "train: runs" in res.output and "eval: runs" in res.output and "overrides: eval.limit=3" in res.output
    assert not (tmp_path / "runs").exists()
    res = invoke("train", recipe, "--dry-run", "--set", "train.groups.0.lr=-1")  # overrides validate too
    assert res.exit_code == 2 and "train.groups.0.lr" in res.output
    res = invoke("eval", recipe, "--dry-run", "--tasks", "no_such_task")
    assert res.exit_code == 2 and "no_such_task" in res.output


def test_dry_run_reports_earlier_stage_outputs_as_pending(tmp_path):
    res = invoke("train", REPO / "recipes" / "demo.yaml", "--dry-run", "--set", f"runs_dir={tmp_path}")
    assert res.exit_code == 0, res.output
    assert f"{tmp_path}/demo/curate/group1/train.parquet (pending" in res.output.replace("\n", "")


@pytest.mark.parametrize("command", ["curate", "train", "distill", "align", "eval", "run"])
def test_every_recipe_command_has_dry_run(command):
    res = invoke(command, REPO / "recipes" / "demo.yaml", "--dry-run", "--set", "runs_dir=/nonexistent/findap-test")
    assert res.exit_code == 0, res.output
    assert "dry run, nothing started" in res.output


# ---- one loader for every entry point ----------------------------------------------------------------------------
def python_m(*args, **kw):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", *map(str, args)], env=env, capture_output=True, text=True,
                          cwd=REPO, timeout=300, **kw)


@pytest.mark.parametrize("module", [["findap", "train"], ["findap.train"]])
def test_python_m_train_is_the_typer_command(module):
    # the old argparse entry point took --model/--config/--out and ignored `base:`, --set, seed and precision
    res = python_m(*module, "recipes/ablations/lora.yaml", "--dry-run", "--set", "train.groups.*.lr=1e-5",
                   "--set", "runs_dir=/nonexistent/findap-test")
    assert res.returncode == 0, res.stderr
    assert "recipe 'lora' is valid" in res.stdout and "overrides: train.groups.*.lr=1e-5" in res.stdout
    res = python_m(*module, "recipes/demo.yaml", "--model", "x")
    assert res.returncode == 2 and "No such option: --model" in res.stderr


def small_train_recipe(tmp_path, model_dir, name):
    from findap.io import write_jsonl
    from helpers.sample_data import ectsum_texts, fpb_conversations

    write_jsonl(tmp_path / "train.jsonl", fpb_conversations(12) + ectsum_texts(1))
    write_jsonl(tmp_path / "dev.jsonl", fpb_conversations(4, offset=500))
    train = {"groups": [{"name": "g1", "train": [str(tmp_path / "train.jsonl")], "dev": [str(tmp_path / "dev.jsonl")],
                         "lr": 1e-3, "max_steps": 2}],
             "seq_len": 128, "micro_batch_tokens": 256, "tokens_per_step": 512, "eval_every": 2, "checkpoint_every": 2,
             "progress": False, "tensorboard": False}
    return write_recipe(tmp_path, name=name, model=model_dir, stages=["train"], train=train)


@pytest.mark.slow  # two launcher processes with the tiny model (~1-2 min on the shared 2-core machine)
def test_torchrun_two_gloo_processes_run_findap_train(tmp_path, tiny_model_dir):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun is installed with torch"
    recipe = small_train_recipe(tmp_path, tiny_model_dir, "r")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    res = subprocess.run([torchrun, "--standalone", "--nproc-per-node", "2", "-m", "findap", "train", recipe,
                          "--set", "train.groups.*.lr=2e-3"],
                         env=env, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-4000:]
    stage = tmp_path / "runs" / "r" / "train"
    assert (stage / "DONE").exists() and (stage / "model" / "model.safetensors").exists()
    assert yaml.safe_load((stage / "config.yaml").read_text())["train"]["groups"][0]["lr"] == 2e-3
    two = [r["loss"] for r in map(json.loads, (stage / "metrics.jsonl").read_text().splitlines()) if "loss" in r]
    assert len(two) == 2, "rank 0 alone logs each step"
    # the same recipe in one process: the two ranks share each step's micro-batches, so the losses agree
    one_recipe = small_train_recipe(tmp_path, tiny_model_dir, "one")
    res = python_m("findap", "train", one_recipe, "--set", "train.groups.*.lr=2e-3")
    assert res.returncode == 0, res.stderr[-4000:]
    one = [r["loss"] for r in map(json.loads, (tmp_path / "runs" / "one" / "train" / "metrics.jsonl")
                                  .read_text().splitlines()) if "loss" in r]
    assert two == pytest.approx(one, abs=1e-4)


@pytest.mark.parametrize("args", [["eval", "--help"], ["run", "--help"]])
def test_a_reader_that_stops_early_is_no_error(args):
    """`findap eval --help | head`: the pipe's reader leaves after a few lines; findap stops quietly (a shell's
    141 or rich's own exit), never with a traceback or an 'internal error' line."""
    shell = f"{sys.executable} -m findap {' '.join(args)} | head -c 300 > /dev/null; echo $((PIPESTATUS[0]))"
    done = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "COLUMNS": "80"})
    assert done.stderr == "", done.stderr
    assert int(done.stdout.strip()) in (1, 141)
