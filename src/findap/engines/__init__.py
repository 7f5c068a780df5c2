"""Generation and scoring engines shared by eval, curate and distill.

`make_engine(spec)` builds one backend from an EngineSpec (findap.engines.config: `EngineConfig.resolve` makes one
from a recipe section's engine settings); each backend is imported only when asked for, so the optional GPU
package (vllm) is never imported by users who do not choose it.
"""
from __future__ import annotations

from findap.engines.base import (
    Engine,
    GenerationRequest,
    LoglikelihoodRequest,
    LoglikelihoodResult,
)
from findap.engines.config import EngineConfig, EngineSpec

__all__ = [
    "Engine",
    "EngineConfig",
    "EngineSpec",
    "GenerationRequest",
    "LoglikelihoodRequest",
    "LoglikelihoodResult",
    "make_engine",
]


def make_engine(spec: EngineSpec | dict, **kwargs) -> Engine:
    """Build the engine a spec names: `hf` (local transformers), `openai` (an OpenAI-compatible endpoint) or
    `vllm` (optional GPU extra). Accepts an EngineSpec or a dict of its fields; a recipe section's EngineConfig
    becomes one with `EngineConfig.resolve` (which fills in what the config leaves to its section). `kwargs` go
    to the engine (HFEngine takes `model=` and `tokenizer=`)."""
    spec = _as_spec(spec)
    if spec.kind == "hf":
        from findap.engines.hf import HFEngine

        return HFEngine(spec, **kwargs)
    if spec.kind == "openai":
        from findap.engines.openai_client import OpenAIEngine

        return OpenAIEngine(spec, **kwargs)
    if spec.kind == "vllm":
        from findap.engines.vllm import VLLMEngine

        return VLLMEngine(spec, **kwargs)
    raise ValueError(f"engine kind must be one of hf, openai, vllm, not {spec.kind!r}")


def _as_spec(spec) -> EngineSpec:
    if isinstance(spec, EngineSpec):
        return spec
    if isinstance(spec, EngineConfig):
        raise TypeError("make_engine takes an EngineSpec: build it with EngineConfig.resolve(model=...), which "
                        "fills in what the config leaves to its section")
    values = dict(spec)
    unknown = sorted(set(values) - set(EngineSpec.model_fields))
    if unknown:
        raise ValueError(f"engine spec: unknown field(s) {unknown}; allowed: {sorted(EngineSpec.model_fields)}")
    return EngineSpec(**values)
