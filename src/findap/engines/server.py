"""An OpenAI-compatible HTTP server over HFEngine: /v1/models, /v1/chat/completions, /v1/completions.

/v1/completions supports `echo` + `logprobs`, so any OpenAI-style client (ours included) can score multiple choice
against a model served here. One model per process; generation requests that arrive together are decoded as one
batch (request_batcher.py), and nothing else touches the model concurrently.

    python -m findap.engines.server --model smollm2-135m-instruct --port 8000
"""
from __future__ import annotations

import argparse
import time
import uuid
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from findap.engines.base import EngineSpec, GenerationRequest
from findap.engines.request_batcher import Batcher
from findap.engines.options import SERVE_FLAGS, add_arguments, config_from
from findap.engines.text import encode_prompt, normalise_stop


class _Body(BaseModel):
    # OpenAI clients send many optional fields (user, penalties, ...): accept and ignore what we do not use.
    model_config = ConfigDict(extra="allow")

    model: str | None = None
    max_tokens: int | None = Field(default=None, ge=0)
    temperature: float = Field(default=1.0, ge=0.0)  # the OpenAI API's default
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool = False


class CompletionBody(_Body):
    prompt: str | list[str]
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=20)


class ChatBody(_Body):
    messages: list[dict[str, Any]]
    max_completion_tokens: int | None = Field(default=None, ge=0)


class ApiError(Exception):
    def __init__(self, message: str, status: int = 400, param: str | None = None):
        super().__init__(message)
        self.status, self.param = status, param


def create_app(engine, served_name: str) -> FastAPI:
    """The FastAPI app serving `engine` (an HFEngine) under the model name `served_name`."""
    app = FastAPI(title="findap OpenAI-compatible server")
    batcher = Batcher(engine, max_batch=engine.spec.batch_size)
    tokenizer = engine.tokenizer

    @app.exception_handler(ApiError)
    def _api_error(_, err: ApiError):
        return JSONResponse(
            status_code=err.status,
            content={"error": {"message": str(err), "type": "invalid_request_error", "param": err.param, "code": None}},
        )

    def check(body: _Body) -> None:
        if body.model not in (None, served_name):
            raise ApiError(f"model {body.model!r} is not served here; this server serves {served_name!r}", 404, "model")
        if body.stream:
            raise ApiError("streaming is not supported by this server", param="stream")
        if body.n != 1:
            raise ApiError("only n=1 is supported", param="n")

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": served_name, "object": "model", "created": 0, "owned_by": "findap"}]}

    @app.get("/health")
    def health():
        return {"status": "ok", "generation_batches": batcher.batches_run, "generation_requests": batcher.requests_run}

    @app.post("/v1/chat/completions")
    def chat(body: ChatBody):
        check(body)
        limit = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        request = _generation_request(body, body.messages, 256 if limit is None else limit)
        prompt_ids = encode_prompt(tokenizer, _render(engine, body.messages))
        _check_fits(engine, prompt_ids, request)
        text, ids = batcher.generate(request)
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": served_name,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": _finish_reason(ids, request), "logprobs": None}],
            "usage": _usage(len(prompt_ids), len(ids)),
        }

    @app.post("/v1/completions")
    def completions(body: CompletionBody):
        check(body)
        prompts = [body.prompt] if isinstance(body.prompt, str) else body.prompt
        choices, prompt_tokens, completion_tokens = [], 0, 0
        for index, prompt in enumerate(prompts):
            request = _generation_request(body, prompt, 16 if body.max_tokens is None else body.max_tokens)
            prompt_ids = encode_prompt(tokenizer, prompt)
            _check_fits(engine, prompt_ids, request)
            if body.logprobs is None:
                text, ids = batcher.generate(request) if request.max_new_tokens else ("", [])
                logprobs = None
            else:
                text, ids, logprobs = batcher.call(
                    lambda: _generate_with_logprobs(engine, request, prompt, prompt_ids, body.logprobs, body.echo)
                )
            choices.append({"index": index, "text": (prompt + text) if body.echo else text,
                            "logprobs": logprobs, "finish_reason": _finish_reason(ids, request)})
            prompt_tokens += len(prompt_ids)
            completion_tokens += len(ids)
        return {
            "id": f"cmpl-{uuid.uuid4().hex}",
            "object": "text_completion",
            "created": int(time.time()),
            "model": served_name,
            "choices": choices,
            "usage": _usage(prompt_tokens, completion_tokens),
        }

    return app


def _render(engine, messages) -> str:
    from findap.engines.text import render_prompt

    try:
        return render_prompt(engine.tokenizer, messages)
    except (TypeError, ValueError) as err:
        raise ApiError(str(err), param="messages") from err


def _check_fits(engine, prompt_ids: list[int], request: GenerationRequest) -> None:
    # Refuse rather than silently cut the prompt's start (a system message, a table) as an API user cannot see it.
    if len(prompt_ids) + request.max_new_tokens > engine.spec.max_length:
        raise ApiError(f"prompt ({len(prompt_ids)} tokens) + max_tokens ({request.max_new_tokens}) exceeds this "
                       f"server's max length {engine.spec.max_length}", param="prompt")


def _generation_request(body: _Body, prompt, max_new_tokens: int) -> GenerationRequest:
    return GenerationRequest(
        prompt=prompt,
        max_new_tokens=max_new_tokens,
        temperature=body.temperature,
        top_p=body.top_p,
        stop=normalise_stop(body.stop),
        seed=body.seed,
    )


def _finish_reason(ids: list[int], request: GenerationRequest) -> str:
    return "length" if len(ids) >= request.max_new_tokens else "stop"


def _usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def _generate_with_logprobs(engine, request, prompt, prompt_ids, k, echo):
    text, ids = engine.generate_with_tokens([request], progress=False)[0] if request.max_new_tokens else ("", [])
    return text, ids, _completion_logprobs(engine, prompt, prompt_ids, ids, k, echo)


def _completion_logprobs(engine, prompt: str, prompt_ids: list[int], generated: list[int], k: int, echo: bool) -> dict:
    """OpenAI legacy `logprobs` object: tokens, their log-probs, top-k alternatives and character offsets."""
    tokenizer = engine.tokenizer
    ids = prompt_ids + generated
    chosen, tops = engine.token_logprobs(ids, top_k=max(1, k))
    # Character offsets of prompt tokens come from the tokenizer; generated tokens follow the prompt's text.
    offsets = _prompt_offsets(tokenizer, prompt, len(prompt_ids))
    text_so_far = len(prompt)
    for token in generated:
        offsets.append(text_so_far)
        text_so_far += len(tokenizer.decode([token]))
    start = 0 if echo else len(prompt_ids)
    pieces = [tokenizer.decode([t]) for t in ids]
    return {
        "tokens": pieces[start:],
        "token_logprobs": chosen[start:],
        "top_logprobs": [
            None if not alts else {tokenizer.decode([t]): lp for t, lp in alts[:k] if k > 0} for alts in tops[start:]
        ],
        "text_offset": offsets[start:],
    }


def _prompt_offsets(tokenizer, prompt: str, n_tokens: int) -> list[int]:
    encoded = tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=False)
    starts = [start for start, _ in encoded["offset_mapping"]]
    # A BOS added by encode_prompt has no text: give it offset 0 so it counts as context.
    return [0] * (n_tokens - len(starts)) + starts[-n_tokens:] if n_tokens else []


# ------------------------------------------------------------------------------------------------- entry points
def check_address(host: str, port: int, flag: str = "--port") -> None:
    """Raise UsageError unless this process could listen on host:port now: checked before the model loads, so a busy
    port costs no loading time. Binds the way uvicorn does (SO_REUSEADDR), then lets go."""
    import errno
    import socket

    from findap.errors import UsageError

    if not 1 <= port <= 65535:
        raise UsageError(f"{flag} {port}: not a TCP port", "use 1-65535, e.g. --port 8000")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
    except socket.gaierror as e:
        raise UsageError(f"--host {host}: cannot listen on it ({e.strerror})", "use 127.0.0.1 (this machine only) "
                         "or 0.0.0.0 (every interface)") from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise UsageError(f"port {port} on {host} is already in use (another server is listening there)",
                                 f"pick a free one with {flag} N, e.g. {flag} {_free_port(host, port)}") from None
            if e.errno == errno.EACCES:
                raise UsageError(f"port {port} on {host}: permission denied (ports below 1024 need privileges)",
                                 f"use {flag} 8000 or another port from 1024") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise UsageError(f"--host {host}: not an address of this machine",
                                 "use 127.0.0.1 or 0.0.0.0") from None
            raise


def _free_port(host: str, near: int) -> int:
    """A port that is free now: the next ones after `near` first (easy to remember), else any."""
    import socket

    for candidate in [*range(near + 1, min(near + 20, 65536)), 0]:
        with socket.socket() as probe:
            try:
                probe.bind((host if host not in ("", "0.0.0.0") else "127.0.0.1", candidate))
            except OSError:
                continue
            return probe.getsockname()[1]
    return near + 1


def serve(spec: EngineSpec, host: str = "127.0.0.1", port: int = 8000, served_name: str | None = None) -> None:
    """Load the model of `spec` into an HFEngine and serve it until interrupted."""
    import uvicorn

    from findap.engines.hf import HFEngine

    check_address(host, port)
    engine = HFEngine(spec)
    app = create_app(engine, served_name or spec.model)
    uvicorn.run(app, host=host, port=port, log_level="info")


class _Parser(argparse.ArgumentParser):
    """argparse, with a wrong option reported as one UsageError line instead of usage text and exit."""

    def error(self, message: str):
        from findap.errors import UsageError

        raise UsageError(f"{self.prog}: {message}", f"see {self.prog} --help")


def main(argv: list[str] | None = None, prog: str = "python -m findap.engines.server") -> None:
    parser = _Parser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct", help="findap model name, hub id or directory")
    parser.add_argument("--served-name", default=None, help="the model name clients send (default: --model)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    add_arguments(parser, SERVE_FLAGS)
    args = vars(parser.parse_args(argv))
    spec = config_from(SERVE_FLAGS, args, kind="hf").resolve(model=args["model"])
    serve(spec, args["host"], args["port"], args["served_name"])


if __name__ == "__main__":
    import sys

    from findap.errors import FindapError, debug_enabled

    try:
        main()
    except FindapError as err:  # the same contract as `findap serve`: one line, exit 2 for a wrong argument
        if debug_enabled():
            raise
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
