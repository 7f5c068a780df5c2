"""VLLMEngine: the same two methods on vLLM, for GPUs (optional extra: `pip install vllm`).

`vllm` is imported inside the constructor, never at module import, so this file costs nothing to users without
it. It follows vLLM's documented offline API: `LLM.generate(token-id prompts, SamplingParams)` with a seed per
request, and `prompt_logprobs` for scoring. Without a GPU the suite runs it against a stand-in `vllm` module with
that API (tests/test_gpu_paths_cpu.py), which checks its scores and prompt tokens against the hf engine's.
"""
from __future__ import annotations

from typing import Iterator, Sequence

from findap.engines.base import EngineSpec, GenerationRequest, LoglikelihoodRequest, LoglikelihoodResult
from findap.engines.cache import RequestCache, generation_settings, loglikelihood_keys, request_key, run_cached
from findap.engines.text import encode_pair, fitted_prompt_ids, render_prompt, truncate_at_stop
from findap.models import resolve_model
from findap.provenance import model_fingerprint


def scoring_ids(ctx: list[int], cont: list[int], max_length: int) -> tuple[list[int], list[int]]:
    """(context, continuation) fitted to vLLM's window: the prompt ctx + cont plus the one token that
    `max_tokens=1` samples must fit max_model_len, so a long context keeps its end (as engines.scoring.plan_groups
    does for the hf engine)."""
    if len(cont) > max_length - 2:
        raise ValueError(f"loglikelihood: a continuation of {len(cont)} tokens does not fit max_length={max_length}")
    keep = max_length - 1 - len(cont)
    return (ctx[-keep:] if len(ctx) > keep else ctx), cont


class VLLMEngine:
    name = "vllm"

    def __init__(self, spec: EngineSpec):
        try:
            from vllm import LLM, SamplingParams
        except ImportError as err:
            raise ImportError("the vllm engine needs the optional package vllm: pip install vllm") from err
        self.spec = spec
        self._sampling_params = SamplingParams
        dtype = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}.get(spec.precision, "auto")
        self.llm = LLM(
            model=resolve_model(spec.model),
            dtype=dtype,
            max_model_len=spec.max_length,
            trust_remote_code=False,
            **spec.extra.get("vllm_args", {}),
        )
        self.tokenizer = self.llm.get_tokenizer()
        self.fingerprint = model_fingerprint(spec.model)  # content, not path: a retrain at the same path differs
        self.identity = f"{self.fingerprint}|{dtype}|max_length={spec.max_length}"
        self.cache = RequestCache(spec.cache_path) if spec.cache_path else None

    def generate(self, requests: Sequence[GenerationRequest], progress: bool = True) -> list[str]:
        texts = [render_prompt(self.tokenizer, r.prompt) for r in requests]
        keys = []
        for r, text in zip(requests, texts):
            settings = generation_settings(r)
            keys.append(
                request_key(op="generate", engine=self.name, model=self.identity, prompt=text, **settings)
                if self.cache is not None and settings is not None else None
            )

        def compute(todo: list[int]) -> Iterator[list[tuple[int, str]]]:
            params = [
                self._sampling_params(
                    max_tokens=requests[i].max_new_tokens,
                    temperature=requests[i].temperature,
                    top_p=requests[i].top_p,
                    stop=list(requests[i].stop or []),
                    seed=requests[i].seed,
                )
                for i in todo
            ]
            # Token ids, not text: given text, vLLM tokenizes with special tokens added, so a chat template that
            # writes its own BOS would get a second one. Left-truncated as the hf engine does: vLLM rejects, for
            # the whole batch, a prompt with no room for one output token (vllm tests/v1/e2e/test_context_length.py).
            prompts = [{"prompt_token_ids": fitted_prompt_ids(self.tokenizer, texts[i], requests[i].max_new_tokens,
                                                              self.spec.max_length)} for i in todo]
            outputs = self.llm.generate(prompts, params, use_tqdm=progress)
            yield [(i, truncate_at_stop(o.outputs[0].text, requests[i].stop)) for i, o in zip(todo, outputs)]

        return run_cached(self.cache, keys, compute)

    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: bool = True
    ) -> list[LoglikelihoodResult]:
        keys = loglikelihood_keys(self, requests)

        def compute(todo: list[int]) -> Iterator[list[tuple[int, LoglikelihoodResult]]]:
            pairs = [scoring_ids(*encode_pair(self.tokenizer, requests[i].context, requests[i].continuation),
                                 self.spec.max_length) for i in todo]
            prompts = [{"prompt_token_ids": ctx + cont} for ctx, cont in pairs]
            # prompt_logprobs=1: per prompt position the top-1 AND the actual prompt token (vllm/logprobs.py:
            # PromptLogprobs = list[dict[int, Logprob] | None], None at position 0; Logprob.rank >= 1)
            params = self._sampling_params(max_tokens=1, temperature=0.0, prompt_logprobs=1)
            outputs = self.llm.generate(prompts, params, use_tqdm=progress)
            batch = []
            for i, (ctx, cont), out in zip(todo, pairs, outputs):
                ids = ctx + cont
                total, greedy = 0.0, True
                for pos in range(len(ctx), len(ids)):
                    alternatives = out.prompt_logprobs[pos]  # {token id: Logprob(logprob, rank, ...)}
                    total += alternatives[ids[pos]].logprob
                    greedy = greedy and alternatives[ids[pos]].rank == 1
                batch.append((i, LoglikelihoodResult(total, greedy, len(cont))))
            yield batch

        return run_cached(
            self.cache, keys, compute,
            to_json=lambda r: [r.logprob, r.is_greedy, r.n_tokens],
            from_json=lambda v: LoglikelihoodResult(float(v[0]), bool(v[1]), int(v[2])),
        )
