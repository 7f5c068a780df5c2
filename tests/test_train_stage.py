"""The stage end to end: curate-style parquet in, a loadable Hugging Face model directory out."""
import torch

from findap.io import write_parquet
from findap.models import load_model, load_tokenizer, save_tiny_llama
from findap.recipe import Recipe
from findap.runs import StageContext
from findap.train import stage
from helpers.sample_data import ectsum_texts, fpb_conversations, gsm8k_conversations

SMALL = {"seq_len": 128, "micro_batch_tokens": 256, "tokens_per_step": 256, "eval_every": 2, "checkpoint_every": 2,
         "progress": False, "tensorboard": False, "dev_max_docs": 4}


def full_rows(rows):
    # pyarrow takes the schema from the first row: give every row both the cpt and the it column.
    return [{"text": None, "messages": None, **r} for r in rows]


def curate_dir(root):
    """What the curate stage writes: runs/<run>/curate/<group>/{train,dev}.parquet."""
    for group, off in (("group1", 0), ("group2", 40)):
        write_parquet(root / group / "train.parquet", full_rows(
            fpb_conversations(6, offset=off) + gsm8k_conversations(2, offset=off) + ectsum_texts(1, offset=off)))
        write_parquet(root / group / "dev.parquet",
                      full_rows(fpb_conversations(2, offset=900) + ectsum_texts(1, split="val")))
    return root


def test_joint_curriculum_run_writes_model_dir(tmp_path):
    model = save_tiny_llama(tmp_path / "tiny", seed=2)
    recipe = Recipe(name="t", model=model, runs_dir=str(tmp_path / "runs"), device="cpu", precision="fp32",
                    train={**SMALL, "groups": [{"name": "group1", "lr": 2e-3, "max_steps": 3},
                                               {"name": "group2", "lr": 1e-3, "warmup": 0.5, "max_steps": 3}]})
    ctx = StageContext(run_dir=recipe.run_dir, name="train",
                       inputs={"data": curate_dir(tmp_path / "runs" / "t" / "curate"), "model": model})
    summary = stage.run(recipe, ctx)
    assert list(summary["phases"]) == ["group1", "group2"] and summary["steps"] == 6
    assert summary["best_dev_loss"] < summary["phases"]["group1"]["best_dev_loss"] + 1.0
    assert summary["tokens"] > 0 and summary["packing_efficiency"] > 0.5 and summary["attention"] == "varlen"
    out = load_model(summary["model_dir"], device="cpu")
    tok = load_tokenizer(summary["model_dir"])
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    base = load_model(model, device="cpu")
    assert not torch.equal(out.model.norm.weight, base.model.norm.weight)  # trained
    metrics = (ctx.dir / "metrics.jsonl").read_text().splitlines()
    assert len(metrics) == 6 and '"dev_loss"' in metrics[1]
    # A rerun finds both phases done and only re-exports the model.
    again = stage.run(recipe, ctx)
    assert again["phases"] == summary["phases"]


def test_sequential_lora_merges_adapters(tmp_path):
    model = save_tiny_llama(tmp_path / "tiny", seed=2)
    recipe = Recipe(name="s", model=model, runs_dir=str(tmp_path / "runs"), device="cpu", precision="fp32",
                    train={**SMALL, "mode": "sequential", "finetune": "lora", "lora_r": 4,
                           "gradient_checkpointing": True,
                           "groups": [{"name": "group1", "lr": 5e-3, "max_steps": 2}]})
    ctx = StageContext(run_dir=recipe.run_dir, name="train",
                       inputs={"data": curate_dir(tmp_path / "runs" / "s" / "curate"), "model": model})
    summary = stage.run(recipe, ctx)
    assert list(summary["phases"]) == ["group1-cpt", "group1-it"]
    out = load_model(summary["model_dir"], device="cpu")
    assert not any("lora" in k for k in out.state_dict())
    base = load_model(model, device="cpu")
    q_out, q_base = out.model.layers[0].self_attn.q_proj.weight, base.model.layers[0].self_attn.q_proj.weight
    assert not torch.equal(q_out, q_base)  # the merged update is in the weights
    torch.testing.assert_close(out.model.norm.weight, base.model.norm.weight)  # LoRA leaves the rest alone
