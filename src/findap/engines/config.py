"""The one declaration of engine settings: which backend reaches which model, and how requests are batched.

Every recipe section that generates holds an `EngineConfig`: `curate.judge.engine`, `distill.policy`,
`distill.judge`, `eval.engine` and `eval.judge.engine`; the engine flags of `findap eval`, `findap chat` and
`findap serve` are made from its fields (findap.engines.options), so a command and a recipe share every default.
A use that needs other defaults (the curation judge's smaller batches, the eval judge's API backend) declares a
variant with `engine_config_variant`: the same fields, constraints and descriptions, other defaults. Settings of
one use (a judge's threshold, a generation budget) stay in that use's section.

`EngineSpec` is the engine actually built: the config with what it left to its section filled in (the model, the
recipe's device and precision, the stage's request cache), plus backend options no recipe declares.
"""
from __future__ import annotations

from copy import copy
from typing import Any, ClassVar, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, create_model, field_validator, model_validator
from pydantic_core import PydanticUndefined

EngineKind = Literal["hf", "openai", "vllm"]
ENGINE_KINDS: tuple[str, ...] = get_args(EngineKind)
Precision = Literal["auto", "bf16", "fp16", "fp32"]


class EngineConfig(BaseModel):
    """How a model is reached: backend, endpoint, batching, context window, device and dtype."""

    model_config = ConfigDict(extra="forbid")

    kind: EngineKind = Field(
        "hf", description="hf (local transformers), openai (any OpenAI-compatible endpoint) or vllm (GPU extra)")
    model: str | None = Field(
        None, description="findap model name, hub id or path (hf, vllm), or the served model name (openai); "
        "None: the section's own model")
    base_url: str | None = Field(
        None, validate_default=True, description="openai: the endpoint, e.g. http://127.0.0.1:8000/v1 (required)")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="openai: environment variable holding the key (never read from a file)")
    batch_size: int = Field(16, ge=1, description="most requests per forward pass (openai: per engine call)")
    max_batch_tokens: int | None = Field(
        16384, ge=16, description="hf: most tokens per forward pass, counted padded: rows x longest row, prompt + "
        "new tokens when generating; bounds inference memory (docs/memory.md); None: rows only")
    max_length: int = Field(2048, ge=16, description="longest prompt + answer in tokens (the context window used)")
    device: str | None = Field(
        None, description="auto, cpu, cuda, cuda:N; unset: the recipe's device (auto without a recipe)")
    precision: Precision | None = Field(
        None, description="auto (bf16 where the hardware has fast bf16, else fp32), bf16, fp16, fp32; unset: the "
        "recipe's precision (auto without a recipe)")
    cache_path: str | None = Field(
        None, description="SQLite request cache (greedy requests only); None: the stage's own where it keeps one "
        "(eval: cache.sqlite, its judge: judge-cache.sqlite, beside the results), else none")
    concurrency: int = Field(
        4, ge=1, description="openai: requests in flight at once (a batching server such as vLLM answers them "
        "together); keep batch_size at least this")

    @model_validator(mode="before")
    @classmethod
    def _a_section_not_a_name(cls, data: Any) -> Any:
        if isinstance(data, str):
            raise ValueError(f"an engine is a section of settings, not a name: write {{kind: {data}}} "
                             f"(fields: {', '.join(EngineConfig.model_fields)})")
        return data

    @field_validator("base_url")
    @classmethod
    def _openai_has_an_endpoint(cls, base_url: str | None, info: ValidationInfo) -> str | None:
        # checked with the settings, not when the engine is built after a long stage has run
        if info.data.get("kind") == "openai" and not base_url:
            raise ValueError("the openai engine needs its endpoint: set base_url, e.g. http://127.0.0.1:8000/v1 (a "
                             "local server) or https://api.openai.com/v1")
        return base_url

    def resolve(self, *, model: str, device: str = "auto", precision: str = "auto", cache_path: str | None = None,
                **extra: Any) -> "EngineSpec":
        """The engine to build: these settings, with each one left to the section (None) taken from the
        arguments: the section's model, the recipe's device and precision, the stage's request cache. `extra`:
        backend options (EngineSpec.extra)."""
        values = self.model_dump()
        fallbacks = {"model": model, "device": device, "precision": precision, "cache_path": cache_path}
        for name, fallback in fallbacks.items():
            if values[name] is None:
                values[name] = fallback
        return EngineSpec(**values, extra=extra)


class EngineSpec(EngineConfig):
    """An engine to build (`make_engine`): an EngineConfig with model, device and precision set, plus `extra`,
    backend options no recipe declares (openai: max_retries, backoff_s, timeout_s; hf: share_context; vllm:
    vllm_args)."""

    model: str = Field("smollm2-135m-instruct", description="findap model name, hub id or path, or served name")
    device: str = Field("auto", description="auto, cpu, cuda, cuda:N")
    precision: Precision = Field("auto", description="auto, bf16, fp16, fp32")
    extra: dict = Field(default_factory=dict, description="backend options no recipe declares")

    @field_validator("extra")
    @classmethod
    def _no_declared_setting(cls, extra: dict) -> dict:
        # a declared setting passed as an extra would be ignored by the backend, which reads the field
        declared = sorted(set(extra) & set(EngineConfig.model_fields))
        if declared:
            raise ValueError(f"{', '.join(declared)}: an engine setting, not an extra option; set it as a field")
        return extra


def engine_config_variant(name: str, module: str, doc: str, descriptions: dict[str, str] | None = None,
                          **defaults: Any) -> type[EngineConfig]:
    """An EngineConfig whose fields named in `defaults` default to other values (`...`: required, not None);
    every field keeps its type, constraints and description (or the one in `descriptions`, where the variant's
    default changes its meaning). `module` is where the class is bound to `name` (pickling)."""
    fields = {}
    for field_name, default in defaults.items():
        info = copy(EngineConfig.model_fields[field_name])
        info.default = PydanticUndefined if default is ... else default
        info.description = (descriptions or {}).get(field_name, info.description)
        annotation = info.annotation
        if default is ... and type(None) in get_args(annotation):  # required: a value, not None
            annotation = Union[tuple(a for a in get_args(annotation) if a is not type(None))]
        fields[field_name] = (annotation, info)
    return create_model(name, __base__=EngineConfig, __module__=module, __doc__=doc, **fields)


class SectionWithEngine(BaseModel):
    """Base of a recipe section that holds its engine settings in `engine:`: a setting written beside `engine:`
    instead of in it (or `engine: openai` for `engine: {kind: openai}`) is refused with one line naming where it
    goes, in validation and in `--set` overrides (findap.recipe reads `moved_fields`)."""

    moved_fields: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _refuse_moved_fields(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        moved = [key for key in data if key in cls.moved_fields]
        if isinstance(data.get("engine"), str):  # `engine: openai`: the backend named where a section goes
            moved.insert(0, "engine")
        if moved:
            where = ", ".join(f"{key} as {cls.moved_fields.get(key, 'engine.kind')}" for key in moved)
            raise ValueError(f"the engine settings are a section, `engine:`: write {where}")
        return data


def moved_into_engine(*unhinted: str) -> dict[str, str]:
    """setting -> its place under `engine.`, for every engine setting but `unhinted` (where the hint would
    mislead, e.g. `model` beside eval's engine, which takes no model: those stay plain unknown fields)."""
    return {name: f"engine.{name}" for name in EngineConfig.model_fields if name not in unhinted}
