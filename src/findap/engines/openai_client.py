"""OpenAIEngine: any OpenAI-compatible HTTP endpoint (OpenAI, vLLM, llama.cpp, our own `findap serve`).

Message prompts go to /chat/completions, plain text to /completions. Log-likelihood uses /completions with
`echo` + `logprobs`: the server returns the log-prob of every prompt token with its character offset, and the
tokens at or after the context's end are the continuation. Servers without prompt log-probs (OpenAI's chat
models) get a clear error rather than a silent zero.

The API key is read from the environment variable named by `spec.api_key_env`, never from a file or argument.
No key is fine for a local server. Transient failures (429, 5xx, timeouts, refused connections) are retried
with exponential backoff; requests run concurrently on a small thread pool.
"""
from __future__ import annotations

import os
import random
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterator, Sequence

import httpx

from findap.engines.base import EngineSpec, GenerationRequest, LoglikelihoodRequest, LoglikelihoodResult
from findap.engines.cache import RequestCache, generation_settings, loglikelihood_keys, request_key, run_cached
from findap.engines.text import move_trailing_space, truncate_at_stop
from findap.progress_bars import progress_bar

RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class EndpointError(RuntimeError):
    """The endpoint answered with something we cannot use (after retries where retrying made sense)."""


class OpenAIEngine:
    name = "openai"

    def __init__(self, spec: EngineSpec, *, client: httpx.Client | None = None):
        if not spec.base_url:
            raise ValueError("openai engine: set base_url, e.g. http://127.0.0.1:8000/v1")
        self.spec = spec
        self.base_url = spec.base_url.rstrip("/")
        self.max_retries = int(spec.extra.get("max_retries", 5))
        self.backoff_s = float(spec.extra.get("backoff_s", 1.0))
        self.concurrency = spec.concurrency
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(spec.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        timeout = httpx.Timeout(float(spec.extra.get("timeout_s", 120.0)), connect=10.0)
        self.client = client or httpx.Client(base_url=self.base_url, headers=headers, timeout=timeout)
        # A remote model's weights cannot be read: the endpoint and the served name are all that names it.
        self.identity = f"{self.base_url}|{spec.model}"
        self.fingerprint = "endpoint:" + self.identity
        self.cache = RequestCache(spec.cache_path) if spec.cache_path else None
        self.http_calls = 0  # successful requests sent; tests count cache hits with it

    # ---------------------------------------------------------------------------------------------- HTTP core
    def post(self, path: str, payload: dict) -> dict:
        """POST with bounded retries on transient failures; other errors raise at once with the server's text."""
        for attempt in range(self.max_retries + 1):
            try:
                response = self.client.post(path, json=payload)
            except (httpx.TimeoutException, httpx.TransportError) as err:
                if attempt == self.max_retries:
                    raise EndpointError(f"{self.base_url}{path}: {type(err).__name__}: {err}") from err
            else:
                if response.status_code == 200:
                    self.http_calls += 1
                    return response.json()
                if response.status_code not in RETRY_STATUS or attempt == self.max_retries:
                    raise EndpointError(
                        f"{self.base_url}{path}: HTTP {response.status_code}: {response.text[:500]}"
                    )
            # Exponential backoff with jitter so parallel workers do not retry in lock-step.
            time.sleep(self.backoff_s * (2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _map(self, fn: Callable[[Any], Any], items: Sequence[Any], progress: bool, desc: str) -> Iterator[Any]:
        """Run fn over items on the thread pool, yielding results in input order."""
        pool = ThreadPoolExecutor(max_workers=max(1, self.concurrency))
        try:
            yield from progress_bar(pool.map(fn, items), enabled=progress, total=len(items), desc=desc)
        finally:  # on an error, do not send the queued requests only to throw their answers away
            pool.shutdown(wait=True, cancel_futures=True)

    # ---------------------------------------------------------------------------------------------- generation
    def generate(self, requests: Sequence[GenerationRequest], progress: bool = True) -> list[str]:
        keys = []
        for r in requests:
            settings = generation_settings(r)
            keys.append(
                request_key(op="generate", engine=self.name, model=self.identity, prompt=r.prompt, **settings)
                if self.cache is not None and settings is not None else None
            )

        def compute(todo: list[int]) -> Iterator[list[tuple[int, str]]]:
            for i, text in zip(todo, self._map(lambda i: self._generate_one(requests[i]), todo, progress, "generate")):
                yield [(i, text)]  # one at a time, so a kill loses at most the requests in flight

        return run_cached(self.cache, keys, compute)

    def _generate_one(self, r: GenerationRequest) -> str:
        payload: dict[str, Any] = {
            "model": self.spec.model,
            "max_tokens": r.max_new_tokens,
            "temperature": r.temperature,
            "top_p": r.top_p,
        }
        if r.stop:
            payload["stop"] = list(r.stop)
        if r.seed is not None:
            payload["seed"] = r.seed
        if isinstance(r.prompt, str):
            answer = self.post("/completions", payload | {"prompt": r.prompt})
            text = _first_choice(answer, "/completions").get("text")
        else:
            answer = self.post("/chat/completions", payload | {"messages": list(r.prompt)})
            text = (_first_choice(answer, "/chat/completions").get("message") or {}).get("content")
        if text is None:
            raise EndpointError(f"{self.base_url}: the answer holds no text: {str(answer)[:300]}")
        return truncate_at_stop(text, r.stop)  # some servers return the stop string; ours never does

    # ------------------------------------------------------------------------------------------ log-likelihood
    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: bool = True
    ) -> list[LoglikelihoodResult]:
        keys = loglikelihood_keys(self, requests)

        def compute(todo: list[int]) -> Iterator[list[tuple[int, LoglikelihoodResult]]]:
            scored = self._map(lambda i: self._score_one(requests[i]), todo, progress, "loglikelihood")
            for i, result in zip(todo, scored):
                yield [(i, result)]

        return run_cached(
            self.cache, keys, compute,
            to_json=lambda r: [r.logprob, r.is_greedy, r.n_tokens],
            from_json=lambda v: LoglikelihoodResult(float(v[0]), bool(v[1]), int(v[2])),
        )

    def _score_one(self, r: LoglikelihoodRequest) -> LoglikelihoodResult:
        context, continuation = move_trailing_space(r.context, r.continuation)
        prompt = context + continuation
        # max_tokens=1 rather than 0: some servers (vLLM) refuse 0; the generated token is ignored below.
        answer = self.post(
            "/completions",
            {"model": self.spec.model, "prompt": prompt, "max_tokens": 1, "temperature": 0.0, "echo": True,
             "logprobs": 1},
        )
        logprobs = _first_choice(answer, "/completions").get("logprobs")
        if not logprobs or not logprobs.get("token_logprobs") or logprobs.get("text_offset") is None:
            raise EndpointError(
                f"{self.base_url}: this endpoint does not return prompt log-probs (echo + logprobs), so it cannot "
                "score log-likelihood; use generative scoring or an hf/vllm engine"
            )
        total, greedy, n = 0.0, True, 0
        tops = logprobs.get("top_logprobs") or [None] * len(logprobs["tokens"])
        for token, lp, offset, top in zip(logprobs["tokens"], logprobs["token_logprobs"], logprobs["text_offset"], tops):
            if offset < len(context) or offset >= len(prompt):
                continue  # context tokens, and the one generated token
            if lp is None:
                raise EndpointError(f"{self.base_url}: no log-prob for continuation token {token!r}")
            total += lp
            n += 1
            if top:
                greedy = greedy and max(top, key=top.get) == token
        if n == 0:
            raise EndpointError(f"{self.base_url}: no continuation tokens found in the echoed prompt")
        return LoglikelihoodResult(total, greedy, n)


def _first_choice(answer: dict, path: str) -> dict:
    choices = answer.get("choices") if isinstance(answer, dict) else None
    if not choices:
        raise EndpointError(f"{path}: the answer has no choices: {str(answer)[:300]}")
    return choices[0]
