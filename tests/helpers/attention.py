"""Switching a loaded test model between attention backends (production code loads a model with one)."""
from findap.train.attention import hf_implementation
from findap.training.lora import base_model


def set_backend(model, backend: str) -> None:
    """Switch a loaded model (or a peft wrapper) to the attention implementation of `backend`."""
    base_model(model).set_attn_implementation(hf_implementation(backend))
