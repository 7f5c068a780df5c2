"""The align stage end to end on a tiny model directory: pairs JSONL in, best-dev model directory out, resume."""
import json

import pytest

from findap.align.stage import load_pairs, run
from findap.io import DataError
from findap.models import load_model, save_tiny_llama
from findap.recipe import Recipe
from findap.runs import StageContext

QUESTIONS = [("What is 10% of 90?", "9", "90"), ("Add 17 and 25.", "42", "32"), ("Half of 64?", "32", "128"),
             ("3 times 14?", "42", "17"), ("100 minus 37?", "63", "73"), ("Double 21?", "42", "23")]


def write_pairs(path):
    with open(path, "w") as f:
        for i, (q, good, bad) in enumerate(QUESTIONS):
            f.write(json.dumps({"id": f"q{i}", "prompt": [{"role": "user", "content": q}],
                                "chosen": f"Step 1: compute it.\nAnswer: {good}", "rejected": f"Answer: {bad}",
                                "source": "genorm", "rationale": "", "meta": {}}) + "\n")


def make(tmp_path, **align):
    model_dir = save_tiny_llama(tmp_path / "policy", seed=0)
    write_pairs(tmp_path / "pairs.jsonl")
    recipe = Recipe(name="t", runs_dir=str(tmp_path / "runs"), precision="fp32", device="cpu",
                    align={"lr": 1e-3, "tokens_per_step": 64, "row_tokens": 256, "eval_every": 2,
                           "checkpoint_every": 1, "dev_fraction": 0.34, "epochs": 6, **align})
    ctx = StageContext(run_dir=recipe.run_dir, name="align",
                       inputs={"model": model_dir, "pairs": tmp_path / "pairs.jsonl"})
    return recipe, ctx


def test_stage_trains_selects_and_resumes(tmp_path):
    recipe, ctx = make(tmp_path, max_steps=2)
    first = run(recipe, ctx)
    assert first["steps"] == 2 and first["train_pairs"] == 4 and first["dev_pairs"] == 2
    assert first["best_dev_loss"] is not None
    load_model(first["model"])  # a loadable Hugging Face directory
    metrics = [json.loads(line) for line in (ctx.dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in metrics if "dev_loss" in m] == [0, 2]
    # A second invocation with a larger budget continues from the saved step instead of starting over.
    recipe2, ctx2 = make(tmp_path, max_steps=4)
    second = run(recipe2, ctx2)
    assert second["steps"] == 4
    train_steps = [json.loads(line)["step"] for line in (ctx.dir / "metrics.jsonl").read_text().splitlines()
                   if "lr" in json.loads(line)]
    assert train_steps == [1, 2, 3, 4]


def test_lora_option_saves_merged_model(tmp_path):
    recipe, ctx = make(tmp_path, max_steps=1, finetune="lora", lora_r=4)
    out = run(recipe, ctx)
    model = load_model(out["model"])
    assert not any("lora" in name for name, _ in model.named_parameters())


def test_bad_pairs_name_file_line_field(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"id": "a", "prompt": "q", "chosen": "x", "rejected": "y"}) + "\n"
                    + json.dumps({"id": "b", "prompt": "q", "chosen": "", "rejected": "y"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'chosen'"):
        load_pairs(path)


def test_distilled_pairs_feed_the_align_stage(tmp_path):
    """The distill -> align contract: align reads the distill directory (pairs.jsonl + dev_pairs.jsonl)."""
    from findap.distill.config import DistillConfig
    from findap.distill.driver import distill_items
    from findap.distill.prompts import load_exercises
    from findap.engines import EngineSpec, make_engine

    model_dir = save_tiny_llama(tmp_path / "policy", seed=0)
    engine = make_engine(EngineSpec(kind="hf", model=model_dir, device="cpu", precision="fp32"))
    cfg = DistillConfig(label_mode="check", include_reference=True, genprm=False, n_samples=1, max_new_tokens=4,
                        dev_fraction=0.3)
    stats = distill_items(load_exercises(limit=3), engine, engine, cfg, tmp_path / "distill", seed=0, progress=False)
    # distill reads the demo's train split only (ex-0-00003, -00004, -00005); the id-hash split puts -00004 in dev
    assert stats["dev_prompts"] == 1
    recipe = Recipe(name="t", runs_dir=str(tmp_path / "runs"), precision="fp32", device="cpu",
                    align={"max_steps": 1, "eval_every": 1})
    ctx = StageContext(run_dir=recipe.run_dir, name="align", inputs={"model": model_dir, "pairs": tmp_path / "distill"})
    out = run(recipe, ctx)
    n_dev = sum(1 for _ in open(tmp_path / "distill" / "dev_pairs.jsonl"))
    assert out["dev_pairs"] == n_dev and out["train_pairs"] == stats["pairs"] - n_dev and out["steps"] == 1
