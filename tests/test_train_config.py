"""The train: and align: sections: section-level defaults for groups, shared knob names, renamed knobs refused."""
import pytest
from pydantic import ValidationError

from findap.align.config import AlignConfig
from findap.train.config import TrainConfig
from findap.train.stage import build_phases
from findap.train.tokenize import TokenizeStats
from findap.training.knobs import TrainingKnobs


def test_section_level_knobs_apply_to_groups_that_do_not_set_them():
    cfg = TrainConfig.model_validate({"lr": 1e-5, "warmup": 0.3, "epochs": 2, "max_steps": 7,
                                      "groups": [{"name": "a"}, {"name": "b", "lr": 2e-5, "warmup": 0.5}]})
    a, b = (cfg.group_knobs(g) for g in cfg.groups)
    assert a == {"lr": 1e-5, "warmup": 0.3, "epochs": 2, "max_steps": 7}
    assert b == {"lr": 2e-5, "warmup": 0.5, "epochs": 2, "max_steps": 7}
    plain = TrainConfig()  # no section values either: the documented defaults
    assert plain.group_knobs(plain.groups[0]) == {"lr": 5e-6, "warmup": 0.1, "epochs": 1.0, "max_steps": None}


def test_phases_take_the_section_learning_rate(tmp_path, tiny_train_set):
    from findap.io import write_jsonl
    from helpers.sample_data import fpb_conversations

    _, tok, _ = tiny_train_set
    write_jsonl(tmp_path / "t.jsonl", fpb_conversations(4))
    cfg = TrainConfig.model_validate({"lr": 3e-4, "seq_len": 128, "micro_batch_tokens": 128, "tokens_per_step": 128,
                                      "groups": [{"name": "g1", "train": [str(tmp_path / "t.jsonl")]},
                                                 {"name": "g2", "train": [str(tmp_path / "t.jsonl")], "lr": 1e-4}]})
    phases = build_phases(cfg, None, tok, tmp_path, TokenizeStats())
    assert [(p.name, p.lr) for p in phases] == [("g1", 3e-4), ("g2", 1e-4)]


@pytest.mark.parametrize("section", [TrainConfig, AlignConfig])
@pytest.mark.parametrize("old, new", [("save_every", "checkpoint_every"), ("batch_tokens", "tokens_per_step"),
                                      ("logprob_chunk", "loss_chunk_tokens"), ("lora", "finetune")])
def test_renamed_knobs_are_refused_with_the_new_name(section, old, new):
    with pytest.raises(ValidationError, match=f"`{old}` was renamed: use `{new}"):
        section.model_validate({old: True if old == "lora" else 64})


def test_both_sections_share_the_training_knobs():
    shared = set(TrainingKnobs.model_fields)
    assert shared <= set(TrainConfig.model_fields) and shared <= set(AlignConfig.model_fields)
    assert {"checkpoint_every", "tokens_per_step", "loss_chunk_tokens", "finetune", "lora_r"} <= shared
    assert AlignConfig(finetune="lora").finetune == TrainConfig(finetune="lora").finetune == "lora"
