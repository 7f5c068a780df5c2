"""Generation and scoring engines shared by eval, curate and distill.

`make_engine(spec)` builds one backend; each backend is imported only when asked for, so the optional GPU
package (vllm) is never imported by users who do not choose it.
"""
from __future__ import annotations

from dataclasses import fields

from findap.engines.base import (
    Engine,
    EngineSpec,
    GenerationRequest,
    LoglikelihoodRequest,
    LoglikelihoodResult,
)

__all__ = [
    "Engine",
    "EngineSpec",
    "GenerationRequest",
    "LoglikelihoodRequest",
    "LoglikelihoodResult",
    "make_engine",
]


def make_engine(spec: EngineSpec | dict | object, **kwargs) -> Engine:
    """Build the engine a spec names: `hf` (local transformers), `openai` (an OpenAI-compatible endpoint) or
    `vllm` (optional GPU extra). Accepts an EngineSpec, a dict, or any config object with EngineSpec's fields
    (e.g. a recipe section). `kwargs` go to the engine (HFEngine takes `model=` and `tokenizer=`)."""
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
    names = {f.name for f in fields(EngineSpec)}
    if isinstance(spec, dict):
        values = dict(spec)
    elif hasattr(spec, "model_dump"):  # a pydantic config section
        values = spec.model_dump()
    else:
        values = {n: getattr(spec, n) for n in names if hasattr(spec, n)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"engine spec: unknown field(s) {unknown}; allowed: {sorted(names)}")
    return EngineSpec(**values)
