"""`findap run` end to end on a scaled-down recipe with the tiny model: every stage's outputs, and the resume path
(kill -9 in the middle of a stage, rerun, same final scores as an uninterrupted run)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from findap.io import read_records

RECIPE = """
name: {name}
model: {model}
runs_dir: {runs}
seed: 0
precision: fp32
curate:
  sources:
    - {{name: demo_finance_texts, path: "demo:finance_texts", limit: 8}}
    - {{name: demo_sentiment, path: "demo:sentiment", limit: 24}}
    - {{name: demo_general_it, path: "demo:general_it", limit: 8}}
    - {{name: demo_exercises, path: "demo:exercises", limit: 8}}
  groups:
    - {{name: group1, sources: [demo_finance_texts, demo_sentiment, demo_general_it]}}
    - {{name: group2, extends: group1, sources: [demo_exercises]}}
  judge: {{sample_size: 4, max_new_tokens: 16, retries: 0, threshold: 0}}
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
    - {{name: group1, lr: 1.0e-3, warmup: 0.1, epochs: 2}}
    - {{name: group2, lr: 1.0e-3, warmup: 0.5, epochs: 1}}
distill:
  sources: [{{kind: exercises, limit: 4}}]
  n_samples: 2
  max_new_tokens: 24
  judge_max_new_tokens: 24
  judge_retries: 0
  label_mode: check
  include_reference: true
  genprm: false
align:
  lr: 1.0e-4
  tokens_per_step: 2048
  max_length: 512
  eval_every: 2
  checkpoint_every: 1
eval:
  tasks: [demo_sentiment, demo_concepts]
  limit: 6
"""


def write_recipe(tmp_path: Path, model: str, name: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(RECIPE.format(name=name, model=model, runs=tmp_path / "runs"))
    return path


def findap(*args: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.Popen([sys.executable, "-m", "findap", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def run_to_end(recipe: Path) -> str:
    proc = findap("run", str(recipe))
    out, _ = proc.communicate(timeout=1200)
    assert proc.returncode == 0, out[-4000:]
    return out


def scores(run_dir: Path) -> dict:
    out = {}
    for label_dir in sorted((run_dir / "eval").iterdir()):
        summary = label_dir / "summary.json"
        if summary.exists():
            out[label_dir.name] = json.loads(summary.read_text())["results"]
    return out


@pytest.mark.slow
def test_run_every_stage_then_resume_after_kill(tmp_path, tiny_model_dir):
    # 1. uninterrupted run
    straight = write_recipe(tmp_path, tiny_model_dir, "straight")
    run_to_end(straight)
    run = tmp_path / "runs" / "straight"
    for stage in ("curate", "train", "distill", "align", "eval", "report"):
        assert (run / stage / "DONE").exists(), f"{stage} has no DONE marker"
    train_rows = read_records(run / "curate" / "group1" / "train.parquet")
    assert {r["kind"] for r in train_rows} == {"cpt", "it"}
    assert json.loads((run / "curate" / "manifest.json").read_text())
    assert (run / "train" / "model" / "config.json").exists() and (run / "align" / "model" / "config.json").exists()
    pairs = read_records(run / "distill" / "pairs.jsonl")
    assert pairs and all(p["chosen"] != p["rejected"] for p in pairs)
    got = scores(run)
    assert set(got) == {"base", "cpt_it", "pa"}, got
    assert (run / "report" / "report.html").exists() and (run / "report" / "report.md").exists()

    # 2. a second `findap run` skips every finished stage
    again = findap("run", str(straight))
    out, _ = again.communicate(timeout=600)
    assert again.returncode == 0 and out.count("already done") == 6, out[-2000:]

    # 3. same recipe under another name, killed (SIGKILL) once training has checkpointed, then rerun
    killed = write_recipe(tmp_path, tiny_model_dir, "killed")
    krun = tmp_path / "runs" / "killed"
    proc = findap("run", str(killed), start_new_session=True)
    deadline = time.time() + 900
    while time.time() < deadline and proc.poll() is None:
        if (krun / "train").exists() and any(p.is_dir() for p in (krun / "train").rglob("ckpt-*")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (krun / "train" / "DONE").exists()
    dry = findap("run", str(killed), "--dry-run")
    assert "train: resumes where it was interrupted" in dry.communicate(timeout=300)[0]
    resumed = run_to_end(killed)
    assert "train: resuming where it was interrupted" in resumed, resumed[-3000:]
    assert scores(krun) == got, "a killed and resumed run must end with the same scores"


# ---------------------------------------------------------------------- one process per stage (fast, no slow mark)
STAGE_IN_CHILD = r"""
import json, sys
from findap.pipeline import run_recipe
from findap.recipe import Recipe

recipe = Recipe.model_validate(json.loads(sys.argv[1]))
results = run_recipe(recipe)
print(json.dumps({"results": results, "parent_loaded": [m for m in ("transformers", "findap.eval.stage")
                                                         if m in sys.modules]}))
"""


def test_each_stage_runs_in_its_own_process_and_reports_its_peak(tmp_path, tiny_model_dir):
    recipe = {"name": "isolated", "model": tiny_model_dir, "runs_dir": str(tmp_path), "precision": "fp32",
              "stages": ["eval"], "eval": {"tasks": ["demo_sentiment"], "limit": 3}}
    out = subprocess.run([sys.executable, "-c", STAGE_IN_CHILD, json.dumps(recipe)], capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["parent_loaded"] == []  # the model and the eval code lived and died in the stage's process
    done = json.loads((tmp_path / "isolated" / "eval" / "DONE").read_text())
    assert done == got["results"]["eval"]
    assert 0.05 < done["peak_rss_gb"] < 8  # VmHWM of the stage's process, in GB
    # a rerun skips the finished stage without starting a process, and returns its DONE summary
    again = subprocess.run([sys.executable, "-c", STAGE_IN_CHILD, json.dumps(recipe)], capture_output=True,
                           text=True, timeout=600)
    assert "already done" in again.stderr and json.loads(again.stdout.strip().splitlines()[-1])["results"]["eval"] == done


def test_a_stage_with_a_missing_input_fails_in_one_line_and_writes_nothing(tmp_path):
    from findap.pipeline import PreflightError, run_recipe
    from findap.recipe import Recipe

    missing = tmp_path / "no-such-prompts.jsonl"
    recipe = Recipe(name="failing", runs_dir=str(tmp_path), stages=["distill"],
                    distill={"sources": [{"kind": "gsm8k", "path": str(missing)}]})
    with pytest.raises(PreflightError) as err:
        run_recipe(recipe)
    assert str(missing) in str(err.value) and "Traceback" not in str(err.value)
    assert not (tmp_path / "failing").exists()


_ORPHAN_PARENT = """
import multiprocessing, os, sys, time
from findap.child_processes import die_with_parent

def stage(parent_pid, pid_file):
    die_with_parent(parent_pid)
    open(pid_file, "w").write(str(os.getpid()))
    time.sleep(120)

if __name__ == "__main__":
    child = multiprocessing.get_context("spawn").Process(target=stage, args=(os.getpid(), sys.argv[1]))
    child.start()
    child.join()
"""


@pytest.mark.skipif(sys.platform != "linux", reason="parent-death signal is Linux's prctl")
def test_a_killed_run_takes_its_stage_process_with_it(tmp_path):
    """SIGKILL of `findap run` must not leave the stage running beside the rerun that resumes it."""
    script, pid_file = tmp_path / "parent.py", tmp_path / "child.pid"
    script.write_text(_ORPHAN_PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(pid_file)])
    deadline = time.time() + 60
    while not (pid_file.exists() and pid_file.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    child_pid = int(pid_file.read_text())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            os.kill(child_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.kill(child_pid, signal.SIGKILL)
    pytest.fail("the stage process outlived its killed parent")
