"""Align: kill -9 in the middle of the stage, rerun: the result equals an uninterrupted run's."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file, save_file

from findap.align.loop import refuse_single_directory_checkpoint
from findap.io import read_jsonl_tolerant
from findap.models import save_tiny_llama
from findap.training.checkpoint import latest_checkpoint
from findap.training.loop import restore_checkpoint
from findap.training.parallel import SingleProcess

SRC = str(Path(__file__).resolve().parents[1] / "src")
QUESTIONS = [("What is 10% of 90?", "9", "90"), ("Add 17 and 25.", "42", "32"), ("Half of 64?", "32", "128"),
             ("3 times 14?", "42", "17"), ("100 minus 37?", "63", "73"), ("Double 21?", "42", "23")]

# The victim: the align stage as `findap align` runs it, SIGKILLed by its own metrics hook once step KILL_AT is
# trained and logged, before that step's checkpoint is written (so the resumed run redoes it from ckpt-000002).
VICTIM = """
import os, signal, sys
from findap.pipeline import run_stage
from findap.recipe import load_recipe
from findap.runs import StageContext
kill_at, log = int(sys.argv[2]), StageContext.log_metrics
def log_then_die(self, record):
    log(self, record)
    if record.get("step") == kill_at and "lr" in record:
        os.kill(os.getpid(), signal.SIGKILL)
StageContext.log_metrics = log_then_die
run_stage(load_recipe(sys.argv[1]), "align")
"""
KILL_AT = 3


def write_recipe(tmp, name, model, **align):
    pairs = tmp / "pairs.jsonl"
    if not pairs.exists():
        pairs.write_text("".join(json.dumps({"id": f"q{i}", "prompt": [{"role": "user", "content": q}],
                                             "chosen": f"Step 1: compute it.\nAnswer: {good}",
                                             "rejected": f"Answer: {bad}"}) + "\n"
                                 for i, (q, good, bad) in enumerate(QUESTIONS)))
    recipe = {"name": name, "runs_dir": str(tmp / "runs"), "precision": "fp32", "device": "cpu", "stages": ["align"],
              "align": {"model": model, "pairs": str(pairs), "lr": 1e-3, "tokens_per_step": 64, "row_tokens": 256,
                        "eval_every": 2, "checkpoint_every": 1, "dev_fraction": 0.34, "epochs": 6, "max_steps": 5,
                        **align}}
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def launch(*args):
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)


def assert_same_tensors(want: dict, got: dict):
    assert want.keys() == got.keys()
    for k in want:
        assert float((want[k] - got[k]).abs().max()) <= 1e-6, k


@pytest.mark.slow  # spawns three Python processes (~20-40 s per case on the shared 2-core machine)
@pytest.mark.parametrize("align", [{}, {"finetune": "lora", "lora_r": 4, "lora_dropout": 0.1}], ids=["full", "lora"])
def test_sigkill_then_resume_matches_uninterrupted_run(tmp_path, align):
    model = save_tiny_llama(tmp_path / "policy", seed=0)
    ref_recipe = write_recipe(tmp_path, "ref", model, **align)
    run_recipe = write_recipe(tmp_path, "run", model, **align)
    reference = launch("-m", "findap", "align", str(ref_recipe))  # runs alongside the victim
    victim = launch("-c", VICTIM, str(run_recipe), str(KILL_AT))
    assert victim.wait(timeout=300) == -signal.SIGKILL, victim.stderr.read()[-3000:]
    run_dir, ref_dir = tmp_path / "runs" / "run" / "align", tmp_path / "runs" / "ref" / "align"
    assert latest_checkpoint(run_dir / "checkpoint").name == "ckpt-000002"
    assert not (run_dir / "DONE").exists()
    killed_wall_s = json.loads((run_dir / "elapsed.json").read_text())["wall_s"]

    resumed = launch("-m", "findap", "align", str(run_recipe))
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()[-3000:]
    assert reference.wait(timeout=300) == 0, reference.stderr.read()[-3000:]
    done = json.loads((run_dir / "DONE").read_text())  # the stage's time counts the killed process's too
    assert done["processes"] == 2 and done["wall_s"] > killed_wall_s > 0

    want_ckpt, got_ckpt = latest_checkpoint(ref_dir / "checkpoint"), latest_checkpoint(run_dir / "checkpoint")
    assert want_ckpt.name == got_ckpt.name == "ckpt-000005"
    assert sorted(p.name for p in (run_dir / "checkpoint").iterdir()) == ["LATEST", "ckpt-000005"]
    want_state, got_state = (json.loads((c / "state.json").read_text()) for c in (want_ckpt, got_ckpt))
    assert got_state["step"] == 5 and got_state["select_on"] == "dev_loss"  # findap.training.state.TrainingState
    for key in ("wall_s", "selection_signature", "select_on"):  # wall time differs; the rest is compared exactly
        assert key == "wall_s" or got_state[key] == want_state[key]
        del got_state[key], want_state[key]
    assert got_state == pytest.approx(want_state, abs=1e-6)
    weights = load_file(got_ckpt / "model.safetensors")
    if align:  # trainable-only: the adapters, not the frozen base
        assert weights and all("lora_" in k for k in weights)
    assert_same_tensors(load_file(want_ckpt / "model.safetensors"), weights)
    assert_same_tensors(load_file(ref_dir / "model" / "model.safetensors"),
                        load_file(run_dir / "model" / "model.safetensors"))
    ref_loss = {r["step"]: r["loss"] for r in read_jsonl_tolerant(ref_dir / "metrics.jsonl") if "lr" in r}
    run_loss = {r["step"]: r["loss"] for r in read_jsonl_tolerant(run_dir / "metrics.jsonl") if "lr" in r}
    assert set(ref_loss) == set(run_loss) == set(range(1, 6))
    assert all(abs(ref_loss[s] - run_loss[s]) < 1e-6 for s in ref_loss)


def test_old_single_directory_checkpoint_is_a_clear_error(tmp_path):
    """Checkpoints written before align shared stage 1's format (checkpoint/trainable.safetensors) are refused."""
    old = tmp_path / "checkpoint"
    old.mkdir()
    save_file({"w": torch.zeros(1)}, str(old / "trainable.safetensors"))
    (old / "state.json").write_text(json.dumps({"step": 3}))
    with pytest.raises(RuntimeError, match="old single-directory format.*delete"):
        refuse_single_directory_checkpoint(old)
    refuse_single_directory_checkpoint(tmp_path / "none")  # nothing there: a fresh start
    assert restore_checkpoint(tmp_path / "none", None, None, None, SingleProcess()) is None
