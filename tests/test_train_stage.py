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


def test_a_changed_later_group_keeps_the_earlier_groups_weights(tmp_path, capfd):
    """Retuning group 2 or adding a group 3 trains from the first changed group on; changing group 1's documents
    trains everything again. What is kept is checked by the phase's DONE (untouched) and its best weights."""
    model = save_tiny_llama(tmp_path / "tiny", seed=2)
    data = curate_dir(tmp_path / "runs" / "k" / "curate")
    groups = [{"name": "group1", "lr": 2e-3, "max_steps": 2}, {"name": "group2", "lr": 1e-3, "max_steps": 2}]

    def run(groups):
        recipe = Recipe(name="k", model=model, runs_dir=str(tmp_path / "runs"), device="cpu", precision="fp32",
                        train={**SMALL, "groups": groups})
        ctx = StageContext(run_dir=recipe.run_dir, name="train", inputs={"data": data, "model": model})
        return stage.run(recipe, ctx), ctx.dir / "groups"

    first, phases = run(groups)
    stamps = {g: (phases / g / "DONE").stat().st_mtime_ns for g in ("group1", "group2")}
    capfd.readouterr()

    retuned, _ = run([groups[0], {**groups[1], "lr": 5e-4}])
    assert (phases / "group1" / "DONE").stat().st_mtime_ns == stamps["group1"]
    assert (phases / "group2" / "DONE").stat().st_mtime_ns != stamps["group2"]
    assert retuned["phases"]["group1"] == first["phases"]["group1"]
    assert "group1: trained before from the same start" in capfd.readouterr().err

    write_parquet(data / "group3" / "train.parquet", full_rows(fpb_conversations(4, offset=80)))
    extended, _ = run([groups[0], {**groups[1], "lr": 5e-4}, {"name": "group3", "lr": 1e-3, "max_steps": 1}])
    assert list(extended["phases"]) == ["group1", "group2", "group3"]
    assert extended["phases"]["group2"] == retuned["phases"]["group2"]  # kept, not trained a third time
    assert extended["steps"] == 2 + 2 + 1

    write_parquet(data / "group1" / "train.parquet", full_rows(fpb_conversations(6, offset=200)))
    stamps = {g: (phases / g / "DONE").stat().st_mtime_ns for g in ("group1", "group2", "group3")}
    run([groups[0], {**groups[1], "lr": 5e-4}, {"name": "group3", "lr": 1e-3, "max_steps": 1}])
    assert all((phases / g / "DONE").stat().st_mtime_ns != stamps[g] for g in stamps)


def test_a_phase_folder_without_its_key_trains_again(tmp_path):
    """A folder from before phases had keys, or made for other inputs, is emptied; one made for this key stays."""
    phase = tmp_path / "groups" / "group1"
    (phase / "best").mkdir(parents=True)
    (phase / "DONE").write_text("{}")
    stage.claim_phase_dir(phase, "k1", stale=False)
    assert not (phase / "DONE").exists() and (phase / stage.PHASE_KEY).read_text().strip() == "k1"
    (phase / "DONE").write_text("{}")
    stage.claim_phase_dir(phase, "k1", stale=False)
    assert (phase / "DONE").exists()
    stage.claim_phase_dir(phase, "k1", stale=True)
    assert not (phase / "DONE").exists()
    (phase / "DONE").write_text("{}")
    stage.claim_phase_dir(phase, "k2", stale=False)
    assert not (phase / "DONE").exists() and (phase / stage.PHASE_KEY).read_text().strip() == "k2"


def test_changed_inputs_keep_the_phase_folders_and_force_does_not(tmp_path):
    from findap.pipeline import SELF_CHECKING, clear_stage

    for force in (False, True):
        stage_dir = tmp_path / str(force) / "train"
        (stage_dir / "groups" / "group1").mkdir(parents=True)
        (stage_dir / "model").mkdir()
        (stage_dir / "DONE").write_text("{}")
        clear_stage(stage_dir, keep_caches=not force, keep=() if force else SELF_CHECKING["train"])
        assert not (stage_dir / "DONE").exists() and not (stage_dir / "model").exists()
        assert (stage_dir / "groups" / "group1").exists() == (not force)
