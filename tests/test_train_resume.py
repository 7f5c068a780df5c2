"""Kill -9 in the middle of training, rerun: the result equals an uninterrupted run's."""
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file

from findap.io import read_jsonl_tolerant, write_jsonl
from findap.models import save_tiny_llama
from helpers.sample_data import ectsum_texts, fpb_conversations

SRC = str(Path(__file__).resolve().parents[1] / "src")


def launch(tmp, name):
    """`python -m findap train RECIPE --set name=NAME`: the run writes tmp/NAME/train."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    cmd = [sys.executable, "-m", "findap", "train", str(tmp / "recipe.yaml"), "--set", f"name={name}"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow  # spawns Python processes (~30-100 s on the shared 2-core machine)
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path):
    model = save_tiny_llama(tmp_path / "tiny", seed=7)
    write_jsonl(tmp_path / "train.jsonl", fpb_conversations(16) + ectsum_texts(1))
    write_jsonl(tmp_path / "dev.jsonl", fpb_conversations(4, offset=500))
    cfg = {"groups": [{"name": "g1", "train": [str(tmp_path / "train.jsonl")], "dev": [str(tmp_path / "dev.jsonl")],
                       "lr": 1e-3, "max_steps": 10}],  # 8 steps left after the kill: it cannot finish first
           "seq_len": 128, "micro_batch_tokens": 128, "tokens_per_step": 256, "checkpoint_every": 1, "eval_every": 2,
           "patience": 10, "progress": False, "tensorboard": False}
    recipe = {"name": "run", "model": str(model), "runs_dir": str(tmp_path), "stages": ["train"], "device": "cpu",
              "precision": "fp32", "train": cfg}
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(recipe))

    reference = launch(tmp_path, "ref")  # runs alongside the victim
    victim = launch(tmp_path, "run")
    latest = tmp_path / "run" / "train" / "groups" / "g1" / "ckpt" / "LATEST"
    deadline = time.time() + 120
    while time.time() < deadline and victim.poll() is None:
        if latest.exists() and latest.read_text().strip() >= "ckpt-000002":
            victim.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert victim.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "run" / "train" / "model").exists()

    resumed = launch(tmp_path, "run")
    assert resumed.wait(timeout=180) == 0, resumed.stderr.read()[-3000:]
    assert reference.wait(timeout=180) == 0, reference.stderr.read()[-3000:]

    want = load_file(tmp_path / "ref" / "train" / "model" / "model.safetensors")
    got = load_file(tmp_path / "run" / "train" / "model" / "model.safetensors")
    assert want.keys() == got.keys()
    for k in want:
        assert float((want[k] - got[k]).abs().max()) <= 1e-6, k
    ref_loss = {r["step"]: r["loss"] for r in read_jsonl_tolerant(tmp_path / "ref" / "train" / "metrics.jsonl")}
    run_loss = {r["step"]: r["loss"] for r in read_jsonl_tolerant(tmp_path / "run" / "train" / "metrics.jsonl")}
    assert set(ref_loss) == set(run_loss) == set(range(1, 11))
    assert all(abs(ref_loss[s] - run_loss[s]) < 1e-6 for s in ref_loss)
