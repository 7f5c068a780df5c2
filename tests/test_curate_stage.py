"""The curate stage end to end on real data: contract outputs, manifest, plot, and resume after a kill."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from findap.recipe import Recipe
from helpers.processes import alive, descendants
from findap.pipeline import run_stage

REPO = Path(__file__).resolve().parents[1]
CONTRACT = ["id", "kind", "text", "messages", "source", "domain", "capability"]


# Enough judged examples that the kill (polled every 10 ms) always lands mid-block: with 3, an idle machine judged
# all of them between two polls once.
JUDGED = 12


def recipe_dict(shared_data, model_dir, runs_dir, name) -> dict:
    return {
        "name": name, "model": model_dir, "runs_dir": str(runs_dir), "seed": 7, "device": "cpu",
        "curate": {
            "data_root": str(shared_data), "limit_per_source": 15,
            "judge": {"sample_size": JUDGED, "max_new_tokens": 16, "retries": 0, "engine": {"batch_size": 1},
                      "max_chars": 200},
            "mixture": {"dev_min": 2},
        },
    }


@pytest.fixture(scope="module")
def reference(shared_data, tiny_model_dir, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    recipe = Recipe.model_validate(recipe_dict(shared_data, tiny_model_dir, runs, "ref"))
    summary = run_stage(recipe, "curate")
    return recipe.run_dir / "curate", summary


def test_outputs_follow_the_contract(reference):
    out, summary = reference
    assert (out / "DONE").exists() and (out / "mixture.png").stat().st_size > 1000
    manifest = json.loads((out / "manifest.json").read_text())
    for group in ("group1", "group2"):
        for split in ("train", "dev"):
            table = pq.read_table(out / group / f"{split}.parquet")
            assert table.column_names == CONTRACT and table.num_rows > 0
        rows = pq.read_table(out / group / "train.parquet").to_pylist()
        for row in rows:
            assert (row["text"] is None) == (row["kind"] == "it")
            assert (row["messages"] is None) == (row["kind"] == "cpt")
    g1 = {r["source"] for r in pq.read_table(out / "group1/train.parquet").to_pylist()}
    g2 = {r["source"] for r in pq.read_table(out / "group2/train.parquet").to_pylist()}
    assert "cfa" not in g1 and "cfa" in g2 and set(manifest["groups"]["group2"]["sources"]) > set(
        manifest["groups"]["group1"]["sources"])
    # counts add up: every source's examples reported; judge failures counted, never fatal
    assert summary["per_source"]["fpb"] == manifest["sources"]["fpb"]["examples"] <= 15
    quality = manifest["filters"]["quality"]
    assert quality["judge"]["judged"] == JUDGED and quality["judge"]["failures"] == JUDGED
    assert quality["classifier"]["trained"] is False and summary["docs_per_s"] > 0
    assert manifest["filters"]["decontam"]["eval_source"] in ("registry", "files")
    stats = manifest["groups"]["group1"]["all"]
    assert stats["domain_shares"]["it"]["finance"] == pytest.approx(0.2, abs=0.05)


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc; the parent-death signal is Linux's")
def test_killed_run_resumes_to_the_same_result(reference, shared_data, tiny_model_dir, tmp_path):
    ref_dir, _ = reference
    data = recipe_dict(shared_data, tiny_model_dir, tmp_path / "runs", "killed")
    script = ("import json,sys; from findap.recipe import Recipe; from findap.pipeline import run_stage; "
              "run_stage(Recipe.model_validate(json.loads(sys.argv[1])), 'curate')")
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    log_path = tmp_path / "killed-curate.log"  # a file, not a pipe: datatrove logs enough to fill a pipe and block
    log = open(log_path, "w")
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(data)], env=env, stdout=log, stderr=log)
    stage_dir = tmp_path / "runs" / "killed" / "curate"
    reach_judge_s = 300  # generous for a loaded machine: the loop leaves as soon as the judge has begun
    deadline = time.time() + reach_judge_s
    labels = []
    while time.time() < deadline and proc.poll() is None:
        labels = list(stage_dir.glob("work/*/judge_labels.jsonl"))
        if labels and labels[0].read_text().count("\n") >= 1:
            break
        time.sleep(0.01)
    helpers = descendants(proc.pid)  # datatrove's forked Manager server, at least
    exited_by_itself = proc.poll()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    why = f"not within {reach_judge_s} s" if exited_by_itself is None else f"it exited with {exited_by_itself}"
    assert labels, f"the run never reached the judge block ({why}); its log ends:\n{log_path.read_text()[-3000:]}"
    assert helpers, "the judge block ran without a forked helper: the orphan check below checks nothing"
    deadline = time.time() + 10
    while time.time() < deadline and [pid for pid in helpers if alive(pid)]:
        time.sleep(0.1)
    orphans = [pid for pid in helpers if alive(pid)]
    for pid in orphans:
        os.kill(pid, signal.SIGKILL)
    assert not orphans, f"processes the killed curation forked outlived it: {orphans}"
    judged_before = labels[0].read_text().count("\n")
    assert judged_before < JUDGED and not (stage_dir / "DONE").exists()
    assert not list(stage_dir.glob("work/*/judge.json"))  # judge block unfinished when killed
    recipe = Recipe.model_validate(data)
    run_stage(recipe, "curate")
    assert (stage_dir / "DONE").exists()
    assert len({json.loads(l)["id"] for l in labels[0].read_text().splitlines()}) == JUDGED
    for group in ("group1", "group2"):
        for split in ("train", "dev"):
            assert pq.read_table(stage_dir / group / f"{split}.parquet").to_pylist() == \
                pq.read_table(ref_dir / group / f"{split}.parquet").to_pylist()
