"""The distill pipeline for real: a tiny model directory as policy and judge through the hf engine.

A random tiny model never solves anything and never writes a parsable verdict, so this exercises exactly the
paths a weak judge takes: exact-check labels, the reference as the only correct candidate, unparsable judge
output retried then dropped and counted, and resume after a kill.
"""
import json

import pytest

from findap.demo.exercises import generate_exercises
from findap.distill.config import DistillConfig
from findap.distill.driver import distill_items
from findap.distill.prompts import load_exercises
from findap.distill.stage import run
from findap.engines import EngineSpec, make_engine
from findap.io import read_jsonl_tolerant
from findap.models import save_tiny_llama
from findap.recipe import Recipe
from findap.runs import StageContext

FAST = dict(n_samples=2, max_new_tokens=8, judge_max_new_tokens=4, judge_retries=1, prompts_per_batch=2,
            dev_fraction=0.0)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    path = save_tiny_llama(tmp_path_factory.mktemp("m") / "tiny", seed=0)
    return make_engine(EngineSpec(kind="hf", model=path, device="cpu", precision="fp32", batch_size=8)), path


def test_check_mode_with_reference_resume_and_counts(engine, tmp_path):
    eng, _ = engine
    items = load_exercises(limit=3)
    cfg = DistillConfig(label_mode="check", include_reference=True, genprm=True, **FAST)
    first = distill_items(items[:2], eng, eng, cfg, tmp_path, seed=0, progress=False)
    pairs_before = read_jsonl_tolerant(tmp_path / "pairs.jsonl")
    assert first["prompts"] == 2
    # Every pair prefers the exact reference solution over a sampled (wrong) one.
    assert pairs_before and all(p["chosen"] == next(i.reference_solution for i in items if i.id == p["meta"]["item_id"])
                                for p in pairs_before)
    assert all(p["source"] == "genorm" and p["meta"]["rejected_check"] is False for p in pairs_before)
    # GenPRM asked the tiny judge about one wrong solution per prompt: unparsable twice (1 retry), dropped, counted.
    assert first["drops"]["prm_unparsable"] == 2

    # A kill after writing a prompt's pairs but before its progress line: those pairs must not survive.
    with open(tmp_path / "pairs.jsonl", "a") as f:
        f.write(json.dumps({**pairs_before[0], "meta": {"item_id": items[2].id}}) + "\n")
    stats = distill_items(items, eng, eng, cfg, tmp_path, seed=0, progress=False)
    pairs = read_jsonl_tolerant(tmp_path / "pairs.jsonl")
    assert stats["prompts"] == 3
    assert [p["id"] for p in pairs[: len(pairs_before)]] == [p["id"] for p in pairs_before]  # kept, not redone
    assert len({p["id"] for p in pairs}) == len(pairs)  # nothing written twice
    assert sum(1 for p in pairs if p["meta"]["item_id"] == items[2].id) == stats["pairs_by_source"]["genorm"] - len(pairs_before)
    saved = json.loads((tmp_path / "stats.json").read_text())
    assert saved == stats


def test_seeded_sampling_is_reproducible(engine, tmp_path):
    eng, _ = engine
    items = load_exercises(limit=2)
    cfg = DistillConfig(label_mode="check", include_reference=True, genprm=False, **FAST)
    distill_items(items, eng, eng, cfg, tmp_path / "a", seed=7, progress=False)
    distill_items(items[::-1], eng, eng, cfg.model_copy(update={"prompts_per_batch": 1}), tmp_path / "b", seed=7,
                  progress=False)
    a = {p["id"]: p["rejected"] for p in read_jsonl_tolerant(tmp_path / "a" / "pairs.jsonl")}
    b = {p["id"]: p["rejected"] for p in read_jsonl_tolerant(tmp_path / "b" / "pairs.jsonl")}
    assert a == b and a


def test_stage_with_judge_counts_unparsable_verdicts(engine, tmp_path):
    _, path = engine
    rows = generate_exercises(2, seed=5)
    data = tmp_path / "calc.jsonl"
    data.write_text("".join(json.dumps({"id": r["id"], "question": r["question"], "answer": r["answer"]}) + "\n"
                            for r in rows))
    recipe = Recipe(name="d", runs_dir=str(tmp_path / "runs"), distill={
        "sources": [{"kind": "jsonl", "path": str(data)}], "label_mode": "both",
        "policy": {"model": path, "device": "cpu", "precision": "fp32"}, **FAST})
    ctx = StageContext(run_dir=recipe.run_dir, name="distill", inputs={"policy": path})
    summary = run(recipe, ctx)
    assert summary["prompts"] == 2 and summary["candidates"] == 4
    assert summary["drops"]["orm_judge_unparsable"] == 4  # every verdict unparsable after the retry
    assert summary["pairs"] == 0 and summary["judge_check_compared"] == 0
    assert (ctx.dir / "stats.json").exists() and (ctx.dir / "progress.jsonl").exists()
