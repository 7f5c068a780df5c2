"""HFEngine: generation and log-likelihood scoring on a local transformers model.

Weights load in the precision the hardware runs fast (bf16 on CUDA and on CPUs with AMX/AVX512-BF16, else fp32),
as inference engines do; `precision="fp32"` keeps exact fp32 for tests. Every request goes through the optional
SQLite cache first (see cache.py).
"""
from __future__ import annotations

import functools
from typing import Iterator, Sequence

import torch

from findap.engines.base import EngineSpec, GenerationRequest, LoglikelihoodRequest, LoglikelihoodResult
from findap.engines.token_budget import length_sorted_batches
from findap.engines.cache import RequestCache, generation_settings, loglikelihood_keys, request_key, run_cached
from findap.engines.decoding import RowSettings, decode_output, generate_batch
from findap.engines.scoring import has_plain_head, plan_groups, score_groups
from findap.engines.text import encode_pair, fitted_prompt_ids, render_prompt
from findap.models import autocast, autocast_dtype, load_model, load_tokenizer, pick_device, resolve_model
from findap.progress_bars import progress_bar
from findap.provenance import model_fingerprint, tensors_fingerprint


class HFEngine:
    name = "hf"

    def __init__(self, spec: EngineSpec, *, model=None, tokenizer=None, agree_tokens=None):
        """Load `spec.model`, or wrap an already loaded `model` and `tokenizer` (tests, training loops).

        `agree_tokens`: when several processes decode one sharded model in lockstep (stage 1's FinEval selection
        under FSDP), maps each decoding step's tokens to the ones every rank continues with
        (decoding.generate_batch)."""
        self.spec = spec
        self.device = pick_device(spec.device)
        fast_dtype = autocast_dtype(self.device, spec.precision)
        self._loaded_from = None  # the model folder, when this engine loaded the weights itself
        if model is None:
            model = load_model(spec.model, device=self.device, dtype=fast_dtype or torch.float32)
            self._loaded_from = resolve_model(spec.model)
        else:
            model = model.to(self.device)
        self.model = model.eval()
        self.tokenizer = tokenizer if tokenizer is not None else load_tokenizer(spec.model)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        self.share_context = bool(spec.extra.get("share_context", True))
        self.cache = RequestCache(spec.cache_path) if spec.cache_path else None
        self.model_calls = 0  # batched forwards run (prefills and scoring); tests count cache hits with it
        self.agree_tokens = agree_tokens

    @functools.cached_property
    def fingerprint(self) -> str:
        """The model's content fingerprint: its folder's files when loaded from one, else its tensors."""
        if self._loaded_from is not None:
            return model_fingerprint(self._loaded_from)
        return tensors_fingerprint(self.model) or f"in-memory:{self.spec.model}"

    @functools.cached_property
    def identity(self) -> str:
        """Everything that changes an answer for the same request text: the weights' content (never their path,
        which a retrain reuses), the dtype they run in, and the context length."""
        return f"{self.fingerprint}|{self.model.dtype}|{self.spec.precision}|max_length={self.spec.max_length}"

    # ------------------------------------------------------------------------------------------ log-likelihood
    def loglikelihood(
        self, requests: Sequence[LoglikelihoodRequest], progress: bool = True
    ) -> list[LoglikelihoodResult]:
        keys = loglikelihood_keys(self, requests)

        def compute(todo: list[int]) -> Iterator[list[tuple[int, LoglikelihoodResult]]]:
            pairs = [encode_pair(self.tokenizer, requests[i].context, requests[i].continuation) for i in todo]
            groups = plan_groups(pairs, self.spec.max_length, self.share_context)
            with progress_bar(enabled=progress, total=len(todo), desc="loglikelihood") as bar:
                for batch in score_groups(self.model, groups, self.spec.batch_size, self.pad_id, self._autocast,
                                          max_tokens=self.spec.max_batch_tokens):
                    self.model_calls += 1
                    bar.update(len(batch))
                    yield [(todo[j], result) for j, result in batch]

        return run_cached(
            self.cache, keys, compute,
            to_json=lambda r: [r.logprob, r.is_greedy, r.n_tokens],
            from_json=lambda v: LoglikelihoodResult(float(v[0]), bool(v[1]), int(v[2])),
        )

    # ---------------------------------------------------------------------------------------------- generation
    def generate(self, requests: Sequence[GenerationRequest], progress: bool = True) -> list[str]:
        return [text for text, _ in self.generate_with_tokens(requests, progress)]

    def generate_with_tokens(
        self, requests: Sequence[GenerationRequest], progress: bool = True
    ) -> list[tuple[str, list[int]]]:
        """(text, generated token ids) per request; the server reports token counts and log-probs from the ids."""
        texts = [render_prompt(self.tokenizer, r.prompt) for r in requests]
        keys = []
        for r, text in zip(requests, texts):
            settings = generation_settings(r)
            cacheable = self.cache is not None and settings is not None
            keys.append(
                request_key(op="generate", engine=self.name, model=self.identity, prompt=text, **settings)
                if cacheable else None
            )

        def compute(todo: list[int]) -> Iterator[list[tuple[int, tuple[str, list[int]]]]]:
            prompts = [self._prompt_ids(texts[i], requests[i].max_new_tokens) for i in todo]
            with progress_bar(enabled=progress, total=len(todo), desc="generate") as bar:
                # a row's KV cache grows to prompt + new tokens: that is the length the token budget counts
                final_lengths = [len(p) + requests[i].max_new_tokens for p, i in zip(prompts, todo)]
                for batch in length_sorted_batches(final_lengths, self.spec.batch_size, self.spec.max_batch_tokens):
                    reqs = [requests[todo[j]] for j in batch]
                    settings = [RowSettings(r.max_new_tokens, r.temperature, r.top_p, r.stop, r.seed) for r in reqs]
                    with self._autocast():
                        ids = generate_batch(
                            self.model, self.tokenizer, [prompts[j] for j in batch], settings, self.eos_ids,
                            self.pad_id, agree=self.agree_tokens,
                        )
                    self.model_calls += 1
                    bar.update(len(batch))
                    yield [
                        (todo[j], (decode_output(self.tokenizer, out, r.stop), out))
                        for j, r, out in zip(batch, reqs, ids)
                    ]

        return run_cached(self.cache, keys, compute, to_json=list, from_json=tuple)

    def _prompt_ids(self, text: str, max_new_tokens: int) -> list[int]:
        return fitted_prompt_ids(self.tokenizer, text, max_new_tokens, self.spec.max_length)

    def _autocast(self):
        return autocast(self.device, self.spec.precision)

    # ------------------------------------------------------------------------------- per-token scores (server)
    @torch.inference_mode()
    def token_logprobs(self, ids: list[int], top_k: int = 1) -> tuple[list[float | None], list[list[tuple[int, float]]]]:
        """Log-prob of each token given the ones before it (None for the first), and the top-k alternatives at
        each position. What OpenAI-style `echo` + `logprobs` reports."""
        ids = ids[-self.spec.max_length :]
        input_ids = torch.tensor([ids], device=self.device)
        chosen: list[float | None] = [None]
        tops: list[list[tuple[int, float]]] = [[]]
        with self._autocast():
            # Projected and log-softmaxed a slice of positions at a time: [T, vocab] in fp32 twice over is the
            # largest thing this request would hold (800 MB for 2048 tokens of a 49K vocabulary).
            for logits, targets in _position_logits(self.model, input_ids, _LOGPROB_CHUNK):
                logprobs = torch.log_softmax(logits.float(), dim=-1)
                target = torch.tensor(ids[1:][targets], device=logprobs.device)
                chosen += logprobs.gather(1, target[:, None])[:, 0].tolist()
                top_values, top_ids = logprobs.topk(max(1, top_k), dim=-1)
                tops += [list(zip(i, v)) for i, v in zip(top_ids.tolist(), top_values.tolist())]
        self.model_calls += 1
        return chosen, tops


_LOGPROB_CHUNK = 256  # positions projected onto the vocabulary at once by token_logprobs


def _position_logits(model, input_ids: torch.Tensor, chunk: int):
    """(logits, slice) for the positions that predict a next token (all but the last), `chunk` positions at a time.
    Models whose head is a plain projection run the decoder once and project slice by slice; others run whole."""
    n = input_ids.shape[1] - 1
    if has_plain_head(model):
        hidden = model.get_decoder()(input_ids=input_ids, use_cache=False).last_hidden_state[0]
        head = model.get_output_embeddings()
        for start in range(0, n, chunk):
            part = slice(start, min(n, start + chunk))
            yield head(hidden[part]), part
    else:
        yield model(input_ids=input_ids, use_cache=False).logits[0, :n], slice(0, n)


def _eos_ids(model, tokenizer) -> set[int]:
    """Tokens that end a generation: the tokenizer's EOS plus any the model's generation config lists."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(configured)
    return ids
