"""The engine contract: what eval, curate (judge) and distill (policy, judges) ask of a model.

An engine turns requests into text or log-probabilities. Backends (hf, openai, vllm) implement the same two
methods so every caller is backend-agnostic. What an engine is built from (`EngineSpec`, made from the
`EngineConfig` of a recipe section or a command's flags) is declared in findap.engines.config.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, Sequence, Union

from findap.engines.config import EngineConfig, EngineKind, EngineSpec  # noqa: F401  (the contract's settings)

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
