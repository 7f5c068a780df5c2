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
  save_every: 1
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
  batch_tokens: 2048
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
    run_to_end(killed)
    assert scores(krun) == got, "a killed and resumed run must end with the same scores"
