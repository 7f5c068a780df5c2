"""Dynamic batching for the server: generation requests arriving together share one batched decode.

HTTP clients send one prompt per request, often several at once (our OpenAIEngine uses a thread pool). One worker
thread owns the model: it takes the first waiting job, gathers the generation jobs that arrive within a few
milliseconds (up to the engine's batch size) and runs them as one batch, which the engine splits further so no
forward exceeds its token budget (`max_batch_tokens`). Other work (prompt scoring for `echo`)
runs on the same thread, so nothing touches the model concurrently. Batched greedy decoding equals unbatched
(tested), so batching changes speed, not answers.
"""
from __future__ import annotations

import queue
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable

from findap.engines.base import GenerationRequest


class Batcher:
    def __init__(self, engine, max_batch: int, wait_s: float = 0.005):
        self.engine, self.max_batch, self.wait_s = engine, max(1, max_batch), wait_s
        self._jobs: queue.Queue = queue.Queue()
        self._held: deque = deque()  # jobs taken while gathering a batch that are not generations
        self.batches_run = self.requests_run = 0
        threading.Thread(target=self._work, name="findap-batcher", daemon=True).start()

    def generate(self, request: GenerationRequest) -> tuple[str, list[int]]:
        """(text, generated ids) for one request, batched with whatever else is waiting."""
        return self._submit("generate", request)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run fn on the model's thread (for work that is not a plain generation)."""
        return self._submit("call", fn)

    def _submit(self, kind: str, payload) -> Any:
        future: Future = Future()
        self._jobs.put((kind, payload, future))
        return future.result()

    def _next(self, timeout: float | None):
        if self._held:
            return self._held.popleft()
        return self._jobs.get(timeout=timeout) if timeout is not None else self._jobs.get()

    def _work(self) -> None:
        while True:
            kind, payload, future = self._next(None)
            if kind == "call":
                _settle(future, payload)
                continue
            batch = [(payload, future)]
            while len(batch) < self.max_batch:
                try:
                    job = self._next(self.wait_s)
                except queue.Empty:
                    break
                if job[0] == "generate":
                    batch.append(job[1:])
                else:
                    self._held.append(job)
                    break
            requests = [r for r, _ in batch]
            try:
                outputs = self.engine.generate_with_tokens(requests, progress=False)
            except BaseException as err:  # every waiting client gets the error, the worker lives on
                for _, f in batch:
                    f.set_exception(err)
                continue
            self.batches_run += 1
            self.requests_run += len(batch)
            for (_, f), out in zip(batch, outputs):
                f.set_result(out)


def _settle(future: Future, fn: Callable[[], Any]) -> None:
    try:
        future.set_result(fn())
    except BaseException as err:
        future.set_exception(err)
