"""`findap sweep`: several recipes on one curation, one base evaluation, one combined report, resumable.

The end-to-end test runs a three-recipe suite (joint CPT+IT, IT only, sequential) on the tiny random Llama with the
real SmolLM2 tokenizer and the demo data, kills the sweep with SIGKILL in the middle, and reruns it. The fast tests
check the refusals (differing curate or eval sections, names), the token budget table and the real
recipes/ablations/ suite's dry run.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from findap.cli import app
from findap.io import write_parquet
from findap.recipe import load_recipe
from findap.sweep import SweepError, budget_warning, budgets, plan_sweep, stage1_budget

REPO = Path(__file__).resolve().parents[1]

BASE = """
model: {model}
runs_dir: {runs}
seed: 0
device: cpu
precision: fp32
stages: [curate, train, eval, report]
curate:
  sources:
    - {{name: demo_finance_texts, path: "demo:finance_texts", limit: 6}}
    - {{name: demo_sentiment, path: "demo:sentiment", limit: 16}}
    - {{name: demo_general_it, path: "demo:general_it", limit: 6}}
  groups:
    - {{name: group1, sources: [demo_finance_texts, demo_sentiment, demo_general_it]}}
  judge: {{enabled: false}}
  classifier: {{enabled: false}}
  mixture: {{it_domain_share: null, cpt_domain_share: null, dev_fraction: 0.2}}
train:
  seq_len: 256
  micro_batch_tokens: 512
  tokens_per_step: 1024
  eval_every: 2
  checkpoint_every: 1
  progress: false
  tensorboard: false
  groups:
    - {{name: group1, lr: 1.0e-3, warmup: 0.0, epochs: 10, max_steps: 2}}
eval:
  tasks: [demo_sentiment]
  limit: 4
  engine: {{batch_size: 4}}
"""
# the suite: each file states only what it changes (max_steps is per phase: sequential has two phases per group)
SUITE = {
    "joint.yaml": "base: ../base.yaml\n",
    "it-only.yaml": "base: ../base.yaml\ntrain: {kinds: [it]}\n",
    "sequential.yaml": "base: ../base.yaml\ntrain:\n  mode: sequential\n  groups:\n"
                       "    - {name: group1, lr: 1.0e-3, warmup: 0.0, epochs: 10, max_steps: 1}\n",
}


def write_suite(root: Path, model: str, extra: dict[str, str] | None = None) -> Path:
    (root / "base.yaml").write_text(BASE.format(model=model, runs=root / "runs"))
    suite = root / "suite"
    suite.mkdir(exist_ok=True)
    for name, text in {**SUITE, **(extra or {})}.items():
        (suite / name).write_text(text)
    return suite


def findap(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "findap", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def done_files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("DONE"))}


@pytest.mark.slow
def test_sweep_shares_curation_and_base_eval_and_resumes_after_kill(tmp_path, tiny_model_dir):
    suite = write_suite(tmp_path, tiny_model_dir)
    out = tmp_path / "runs" / "suite"

    # 1. killed (SIGKILL, the sweep and its stage processes) once the second recipe has trained
    proc = findap("sweep", str(suite), "--shared-curation", start_new_session=True)
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None and not (out / "joint" / "train" / "DONE").exists():
        time.sleep(0.2)
    assert proc.poll() is None, "the sweep ended before it could be killed:\n" + proc.stdout.read()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = done_files(out)
    assert "it-only/curate/DONE" in before and "joint/train/DONE" in before
    assert "sequential/train/DONE" not in before and not (out / "report").exists()

    # 2. rerun: finished stages are skipped (their DONE untouched), the rest runs, one report is written
    again = findap("sweep", str(suite), "--shared-curation")
    log, _ = again.communicate(timeout=900)
    assert again.returncode == 0, log[-4000:]
    after = done_files(out)
    assert {k: after[k] for k in before} == before, "a finished stage was redone"
    stage_dones = [k for k in before if k.count("/") == 2]  # <recipe>/<stage>/DONE, not a train phase's
    assert len(stage_dones) >= 3 and log.count("already done") >= len(stage_dones), log[-3000:]

    # curation ran once, by the first recipe (it-only, sorted first); the others read its files
    assert [k for k in after if k.endswith("curate/DONE")] == ["it-only/curate/DONE"]
    shared = out / "it-only" / "curate"
    for name in ("joint", "sequential"):
        config = yaml.safe_load((out / name / "train" / "config.yaml").read_text())
        assert "curate" not in config["stages"]
        assert config["train"]["groups"][0]["train"] == [str(shared / "group1" / "train.parquet")]
        assert config["train"]["groups"][0]["dev"] == [str(shared / "group1" / "dev.parquet")]
    record = json.loads((out / "sweep.json").read_text())
    assert record["status"] == "done" and record["curation"]["dir"] == str(shared)
    assert record["curation"]["made_by"] == "it-only"

    # the base model was evaluated once; each recipe's model is labelled by the recipe
    assert sorted(p.parent.name for p in out.rglob("eval/*/summary.json")) == [
        "base", "it-only--cpt_it", "joint--cpt_it", "sequential--cpt_it"]
    board = json.loads((out / "report" / "leaderboard.json").read_text())
    assert board["models"] == ["base", "it-only/cpt_it", "joint/cpt_it", "sequential/cpt_it"]
    assert board["base"] == "base"
    report = (out / "report" / "report.md").read_text()
    assert "sequential/cpt_it" in report and "it-only/cpt_it" in report

    # the ablations trained what they say: sequential in a CPT then an IT phase, it-only on IT documents only
    phases = json.loads((out / "sequential" / "train" / "DONE").read_text())["phases"]
    assert list(phases) == ["group1-cpt", "group1-it"] and all(p["steps"] == 1 for p in phases.values())
    it_only = json.loads((out / "it-only" / "train" / "DONE").read_text())
    joint = json.loads((out / "joint" / "train" / "DONE").read_text())
    assert it_only["steps"] == joint["steps"] == 2
    assert it_only["mode"] == "joint" and it_only["cpt_docs"] > 0  # the curation has CPT text; it-only skipped it


# ---- fast checks --------------------------------------------------------------------------------------------------
def test_differing_curate_sections_are_refused_naming_recipe_and_field(tmp_path, tiny_model_dir):
    suite = write_suite(tmp_path, tiny_model_dir,
                        {"wider.yaml": "base: ../base.yaml\ncurate: {mixture: {dev_fraction: 0.3}}\n"})
    with pytest.raises(SweepError) as err:
        plan_sweep([suite])
    assert str(suite / "wider.yaml") in str(err.value)
    assert "curate.mixture.dev_fraction: 0.3 here, 0.2 in" in str(err.value)

    result = CliRunner().invoke(app, ["sweep", str(suite), "--dry-run"])
    assert result.exit_code == 2 and "curate.mixture.dev_fraction" in result.output
    # each recipe curating for itself, the same files are accepted
    planned = plan_sweep([suite], shared_curation=False)
    assert all("curate" in m.run.stages for m in planned.members) and planned.curate_dir is None


def test_differing_base_model_or_eval_settings_are_refused(tmp_path, tiny_model_dir):
    suite = write_suite(tmp_path, tiny_model_dir, {"other.yaml": "base: ../base.yaml\nmodel: smollm2-135m\n"})
    with pytest.raises(SweepError, match=r"other\.yaml.*same base model"):
        plan_sweep([suite])
    (suite / "other.yaml").write_text("base: ../base.yaml\neval: {limit: 5}\n")
    with pytest.raises(SweepError, match=r"eval\.limit: 5 here, 4 in"):
        plan_sweep([suite])
    (suite / "other.yaml").write_text("base: ../base.yaml\neval: {include: [cpt_it]}\n")  # allowed to differ
    assert len(plan_sweep([suite]).members) == 4


def test_plan_labels_models_by_recipe_and_evaluates_the_base_once(tmp_path, tiny_model_dir):
    suite = write_suite(tmp_path, tiny_model_dir)
    planned = plan_sweep([suite / "joint.yaml", suite / "it-only.yaml"], out=tmp_path / "sw")
    joint, it_only = planned.members
    assert planned.curation_owner is joint and planned.curate_dir == tmp_path / "sw" / "joint" / "curate"
    assert joint.labels == {"base": tiny_model_dir, "joint/cpt_it": str(tmp_path / "sw/joint/train/model")}
    assert it_only.labels == {"it-only/cpt_it": str(tmp_path / "sw/it-only/train/model")}
    assert it_only.run.stages == ["train", "eval"] and joint.run.stages == ["curate", "train", "eval"]
    assert it_only.run.eval.include == [] and it_only.run.eval.models == it_only.labels


def test_base_recipe_replaces_each_recipes_own_base(tmp_path, tiny_model_dir):
    suite = write_suite(tmp_path, tiny_model_dir)
    other = tmp_path / "other-base.yaml"
    other.write_text((tmp_path / "base.yaml").read_text().replace("limit: 4", "limit: 3"))
    planned = plan_sweep([suite], base_recipe=other, overrides=["seed=7"])
    assert [m.recipe.name for m in planned.members] == ["it-only", "joint", "sequential"]
    assert all(m.recipe.eval.limit == 3 and m.recipe.seed == 7 for m in planned.members)
    assert planned.members[0].recipe.train.kinds == ["it"] and planned.members[2].recipe.train.mode == "sequential"


def test_curation_given_by_run_dir_is_checked(tmp_path, tiny_model_dir):
    suite = write_suite(tmp_path, tiny_model_dir)
    done = tmp_path / "old" / "curate"
    done.mkdir(parents=True)
    recipe = load_recipe(tmp_path / "base.yaml", ["curate.mixture.dev_fraction=0.1"])
    (done / "config.yaml").write_text(yaml.safe_dump(recipe.model_dump(mode="json")))
    with pytest.raises(SweepError, match="not a finished curate stage"):
        plan_sweep([suite], curation=tmp_path / "old")
    (done / "DONE").write_text("{}")
    with pytest.raises(SweepError, match=r"curate\.mixture\.dev_fraction: 0\.2 here, 0\.1 in"):
        plan_sweep([suite], curation=tmp_path / "old")
    recipe = load_recipe(tmp_path / "base.yaml")
    (done / "config.yaml").write_text(yaml.safe_dump(recipe.model_dump(mode="json")))
    planned = plan_sweep([suite], curation=tmp_path / "old")
    assert planned.curation_owner is None and planned.curate_dir == done
    assert all("curate" not in m.run.stages for m in planned.members)


def test_token_budgets_hand_computed_and_warned_when_more_than_10_percent_apart(tmp_path, tiny_model_dir):
    write_suite(tmp_path, tiny_model_dir)
    tokens = {"group1": {"cpt": 3000, "it": 5000}}
    overrides = ["train.groups.0.max_steps=null", "train.groups.0.epochs=2"]
    joint = load_recipe(tmp_path / "base.yaml", overrides)
    assert stage1_budget(joint, tokens).tokens == 2 * 8000
    it_only = load_recipe(tmp_path / "base.yaml", [*overrides, "train.kinds=[it]"])
    assert stage1_budget(it_only, tokens).tokens == 2 * 5000
    capped = load_recipe(tmp_path / "base.yaml", [*overrides, "train.groups.0.max_steps=3"])
    assert stage1_budget(capped, tokens).tokens == 3 * 1024  # max_steps x tokens_per_step binds
    sequential = load_recipe(tmp_path / "base.yaml", [*overrides, "train.mode=sequential",
                                                      "train.groups.0.max_steps=5"])
    assert stage1_budget(sequential, tokens).tokens == 5 * 1024 + 5 * 1024  # a cap per phase
    assert stage1_budget(joint, None).tokens is None  # epochs only: unknown before the curation

    suite = tmp_path / "suite"
    (suite / "sequential.yaml").write_text("base: ../base.yaml\ntrain: {mode: sequential}\n")  # 2 x 2 steps
    found = budgets(plan_sweep([suite]))
    assert [(b.recipe, b.tokens) for b in found] == [("it-only", 2048), ("joint", 2048), ("sequential", 4096)]
    warning = budget_warning(found)
    assert warning and "sequential 4,096 (2.00x)" in warning and "joint" not in warning
    result = CliRunner().invoke(app, ["sweep", str(suite), "--dry-run", "--out", str(tmp_path / "sw")])
    assert result.exit_code == 0, result.output
    assert "differ by more than 10%" in result.output


def test_the_ablation_suite_is_valid_shares_one_curation_and_has_equal_budgets(tmp_path):
    result = CliRunner().invoke(app, ["sweep", str(REPO / "recipes" / "ablations"), "--dry-run",
                                      "--out", str(tmp_path / "ablations")])
    assert result.exit_code == 0, result.output
    assert "nothing started" in result.output and "WARNING" not in result.output
    planned = plan_sweep([REPO / "recipes" / "ablations"], out=tmp_path / "ablations")
    names = {m.recipe.name for m in planned.members}
    assert names == {"joint", "sequential", "it-only", "cpt-only", "lora", "genorm-only"}
    found = {b.recipe: b.tokens for b in budgets(planned)}
    assert len(set(found.values())) == 1 and None not in found.values(), found
    by_name = {m.recipe.name: m.recipe for m in planned.members}
    assert by_name["sequential"].train.mode == "sequential" and by_name["it-only"].train.kinds == ["it"]
    assert by_name["cpt-only"].train.kinds == ["cpt"] and by_name["lora"].train.finetune == "lora"
    assert by_name["joint"].distill.genprm and not by_name["genorm-only"].distill.genprm
    labels = [label for m in planned.members for label in m.labels]
    assert labels.count("base") == 1 and "joint/pa" in labels and "joint/cpt_it" in labels
    assert "genorm-only/pa" in labels


def test_kinds_filter_trains_on_the_chosen_documents(tmp_path, tiny_train_set):
    from findap.train.config import TrainConfig
    from findap.train.stage import build_phases
    from findap.train.tokenize import TokenizeStats

    _, tok, _ = tiny_train_set
    rows = [{"kind": "cpt", "text": f"Revenue rose {i} percent in the quarter."} for i in range(3)] + [
        {"kind": "it", "messages": [{"role": "user", "content": f"Sentiment of item {i}?"},
                                    {"role": "assistant", "content": "Positive"}]} for i in range(4)]
    write_parquet(tmp_path / "data" / "g" / "train.parquet", rows)
    for kinds, mode, expected in (([], "joint", {"g": 7}), (["it"], "joint", {"g": 4}), (["cpt"], "joint", {"g": 3}),
                                  (["it"], "sequential", {"g-it": 4})):
        cfg = TrainConfig(seq_len=64, micro_batch_tokens=64, tokens_per_step=64, groups=[{"name": "g"}], mode=mode,
                          **({"kinds": kinds} if kinds else {}))
        phases = build_phases(cfg, tmp_path / "data", tok, tmp_path / "out", TokenizeStats())
        assert {p.name: len(p.train_docs) for p in phases} == expected, (kinds, mode)
