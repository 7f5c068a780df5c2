"""Recipe section for the eval stage: which tasks, which answer modes, how many items, which engine."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

# Tasks whose data sits in the shared data directory, so a fresh offline checkout can run them.
DEFAULT_TASKS = ["fpb", "fomc", "ner", "tatqa", "flare_german", "mmlu_finance", "cfa_easy", "arc"]


class JudgeEngineConfig(BaseModel):
    """The LLM judge for judge-scored tasks (MT-bench, FinanceBench). The paper used GPT-4o through an API."""

    model_config = ConfigDict(extra="forbid")

    engine: Literal["hf", "openai", "vllm"] = Field("openai", description="judge engine backend")
    model: str = Field(description="judge model: served model name (openai) or findap name / hub id / path")
    base_url: str | None = Field(None, description="openai engine: endpoint, e.g. https://api.openai.com/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the judge's API key")
    max_new_tokens: int = Field(1024, ge=16, description="judge answer budget (reasoning first, verdict last)")
    retries: int = Field(2, ge=0, description="re-asks for unparsable verdicts before counting a parse failure")
    max_batch_tokens: int | None = Field(16384, ge=16, description="hf engine: most tokens per forward pass, "
                                         "counted padded (prompt + new tokens); None: rows only")


class EvalConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

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
    engine: Literal["hf", "openai", "vllm"] = Field("hf", description="engine backend")
    base_url: str | None = Field(None, description="openai engine: endpoint, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = Field("OPENAI_API_KEY", description="openai engine: environment variable holding the key")
    batch_size: int = Field(16, ge=1, description="requests per forward pass")
    max_batch_tokens: int | None = Field(
        16384, ge=16, description="most tokens per forward pass of the local model (hf engine), counted padded: "
        "rows x longest row, prompt + new tokens when generating; bounds inference memory (docs/memory.md); "
        "None: rows only")
    max_length: int = Field(2048, ge=16, description="longest prompt + answer in tokens")
    judge: JudgeEngineConfig | None = Field(
        None, description="judge for judge-scored tasks; None leaves their answers stored, marked needs_judge")
    task_sets: dict[str, list[str]] = Field(
        default_factory=dict, description="named sets of tasks whose mean headline score the report shows, with its "
        "95% interval and the paired difference to the base model, e.g. {finance_trained: [fpb, fomc, ner]}")
