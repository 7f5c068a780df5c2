"""LoRA adapters (peft) from a config section's `lora_r`, `lora_alpha`, `lora_dropout`, `lora_targets`."""
from __future__ import annotations


def apply_lora(model, knobs):
    """`model` wrapped with trainable LoRA adapters; the base weights are frozen. Merged on save
    (findap.training.checkpoint.save_model_dir)."""
    from peft import LoraConfig, get_peft_model

    targets = knobs.lora_targets if isinstance(knobs.lora_targets, str) else list(knobs.lora_targets)
    lora = LoraConfig(r=knobs.lora_r, lora_alpha=knobs.lora_alpha, lora_dropout=knobs.lora_dropout,
                      target_modules=targets, task_type="CAUSAL_LM")
    return get_peft_model(model, lora)


def base_model(model):
    """The transformers model under a peft wrapper (the model itself when there is none)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model
