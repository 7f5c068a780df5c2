"""Recipe section for the eval stage: which tasks, which answer modes, how many items, which engine."""
from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict, Field, field_validator

from findap.engines.config import EngineConfig, SectionWithEngine, engine_config_variant, moved_into_engine
from findap.engines.options import flags

# Tasks whose data sits in the shared data directory, so a fresh offline checkout can run them.
DEFAULT_TASKS = ["fpb", "fomc", "ner", "tatqa", "flare_german", "mmlu_finance", "cfa_easy", "arc"]


EvalJudgeEngine = engine_config_variant(
    "EvalJudgeEngine", __name__, "The eval judge's engine: an API model by default (the paper used GPT-4o), so "
    "the model is required and the backend is openai.", kind="openai", model=...,
    descriptions={"model": "the judge: served model name (openai), or findap model name, hub id or path"})


class EvalJudgeConfig(SectionWithEngine):
    """The LLM judge for judge-scored tasks (MT-bench, FinanceBench). The paper used GPT-4o through an API."""

    model_config = ConfigDict(extra="forbid")
    moved_fields = moved_into_engine()

    engine: EvalJudgeEngine = Field(
        description="judge model and engine (findap.engines); engine.model: served model name (openai) or findap "
        "name / hub id / path")
    max_new_tokens: int = Field(1024, ge=16, description="judge answer budget (reasoning first, verdict last)")
    retries: int = Field(2, ge=0, description="re-asks for unparsable verdicts before counting a parse failure")


class EvalConfig(SectionWithEngine):
    model_config = ConfigDict(extra="forbid")
    moved_fields = moved_into_engine("model")

    enabled: bool = Field(True, description="run the eval stage")
    tasks: list[str] = Field(default_factory=lambda: list(DEFAULT_TASKS),
                             description="task names, groups (fineval, fineval-similar, fineval-novel, task, "
                                         "finance, local, demo, ...) or task YAML paths")
    modes: list[Literal["direct", "cot", "loglik"]] = Field(
        default_factory=lambda: ["direct"],
        description="scoring modes, each written to <task>.<mode>.json: direct and cot are the generative chat "
        "prompts; loglik is the plain log-likelihood form (no chat template; labels or options ranked as "
        "continuations), for classification and multiple-choice tasks; the other tasks are listed as having "
        "no such form, which is not a failure")
    limit: int | None = Field(100, ge=1, description="items per task (None = all); the same seeded items each run")
    split: Literal["dev", "unseen"] | None = Field(
        None, description="split role to score: dev for model selection, unseen for reports, None = each task's own")
    few_shot: int | None = Field(None, ge=0, description="override every task's few-shot count")
    prefer: Literal["local", "hub", "auto"] = Field(
        "local", description="local files only, the Hugging Face hub first, or auto (local, else hub; needs internet)")
    allow_skips: bool = Field(
        False, description="accept a partial table: tasks whose data cannot be had here (hub-only data under "
        "prefer: local, no internet) are listed in the results instead of failing the stage")
    models: dict[str, str] = Field(default_factory=dict,
                                   description="extra models to evaluate, label -> name or path")
    include: list[str] = Field(default_factory=lambda: ["base", "cpt_it", "pa"],
                               description="which of this run's models to evaluate (base, cpt_it, pa) when present")
    engine: EngineConfig = Field(
        default_factory=EngineConfig, description="how the evaluated models are run (findap.engines); the model is "
        "each evaluated one (include, models), so engine.model stays unset; engine.cache_path None: cache.sqlite in "
        "the stage folder")
    judge: EvalJudgeConfig | None = Field(
        None, description="judge for judge-scored tasks; None leaves their answers stored, marked needs_judge")
    task_sets: dict[str, list[str]] = Field(
        default_factory=dict, description="named sets of tasks whose mean headline score the report shows, with its "
        "95% interval and the paired difference to the base model, e.g. {finance_trained: [fpb, fomc, ner]}")

    @field_validator("engine")
    @classmethod
    def _no_model(cls, engine: EngineConfig) -> EngineConfig:
        if engine.model is not None:
            raise ValueError(f"model {engine.model!r}: the eval engine runs each evaluated model (eval.include, "
                             "eval.models); add this one as eval.models.LABEL=" + engine.model)
        return engine


# `findap eval` flags of the engine settings (findap.engines.options): eval.engine's, and the judge's
EVAL_ENGINE_FLAGS = flags(EngineConfig, "kind", "base_url", "api_key_env", "batch_size", "max_batch_tokens",
                          "max_length", "device", "precision", renamed={"kind": "--engine"})
EVAL_JUDGE_FLAGS = flags(EvalJudgeEngine, "model", "kind", "base_url", "api_key_env", prefix="judge-",
                         renamed={"kind": "--judge-engine", "api_key_env": "--judge-key-env"},
                         helps={"model": "judge for MT-bench/FinanceBench (e.g. gpt-4o)",
                                "kind": "judge engine: openai, hf or vllm",
                                "base_url": "judge endpoint (openai engine)",
                                "api_key_env": "environment variable holding the judge's key"})
