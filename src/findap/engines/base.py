"""The engine contract: what eval, curate (judge) and distill (policy, judges) ask of a model.

An engine turns requests into text or log-probabilities. Backends (hf, openai, vllm) implement the same two
methods so every caller is backend-agnostic.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol, Sequence, Union

Message = dict  # {"role": "system" | "user" | "assistant", "content": str}
Prompt = Union[str, list[Message]]  # plain text is sent as-is; a message list goes through the chat template


@dataclass(frozen=True)
class GenerationRequest:
    prompt: Prompt
    max_new_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    stop: tuple[str, ...] | None = None
    seed: int | None = None


@dataclass(frozen=True)
class LoglikelihoodRequest:
    context: str  # already rendered (chat template applied by the caller if wanted)
    continuation: str


@dataclass(frozen=True)
class LoglikelihoodResult:
    logprob: float  # sum of log p(continuation tokens | context)
    is_greedy: bool  # every continuation token is the argmax
    n_tokens: int


class Engine(Protocol):
    name: str

    def generate(self, requests: Sequence[GenerationRequest], progress: bool = True) -> list[str]: ...

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: bool = True
    ) -> list[LoglikelihoodResult]: ...


EngineKind = Literal["hf", "openai", "vllm"]


@dataclass
class EngineSpec:
    """How to reach a model. `model` is a findap model name, hub id or path (hf, vllm) or a served model name."""

    kind: EngineKind = "hf"
    model: str = "smollm2-135m-instruct"
    base_url: str | None = None  # openai: e.g. http://127.0.0.1:8000/v1
    api_key_env: str = "OPENAI_API_KEY"  # openai: the key is read from this environment variable, never a file
    batch_size: int = 16  # most rows per forward
    # most tokens per forward, counted padded: rows x longest row (prompt + new tokens when generating, since the
    # KV cache grows to that). Bounds inference memory whatever the prompt lengths; None: rows only. docs/memory.md
    max_batch_tokens: int | None = 16384
    max_length: int = 2048
    device: str = "auto"
    precision: str = "auto"
    cache_path: str | None = None  # sqlite request cache; None disables it
    extra: dict = field(default_factory=dict)
