"""SQLite request cache: a killed evaluation re-run answers finished requests from disk and computes only the rest.

The key is a SHA-256 of everything that decides the answer: engine kind, model identity, the operation and the
request's fields, with prompts already rendered (chat template applied) where the engine renders them. Values are
JSON (never pickle). Sampling without a seed is never cached: its answer is meant to change between runs.

Engines write each finished batch in its own transaction, so at most one batch of work is lost to a kill. WAL mode
lets readers (another evaluation, a report) look while one writer writes.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from findap.engines.base import GenerationRequest


def request_key(**fields: Any) -> str:
    """A stable hash of the fields (JSON with sorted keys, so dict order never matters)."""
    blob = json.dumps(fields, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def loglikelihood_keys(engine, requests) -> list[str | None]:
    """Cache keys of log-likelihood requests for `engine` (None each when the engine has no cache)."""
    return [
        request_key(op="loglikelihood", engine=engine.name, model=engine.identity, context=r.context,
                    continuation=r.continuation) if engine.cache is not None else None
        for r in requests
    ]


def generation_settings(request: GenerationRequest) -> dict | None:
    """The settings that decide a generation's output, or None when the output must not be cached."""
    if request.temperature > 0 and request.seed is None:
        return None
    settings = {"max_new_tokens": request.max_new_tokens, "stop": list(request.stop or ())}
    if request.temperature > 0:  # greedy ignores these, so they must not split the cache
        settings |= {"temperature": request.temperature, "top_p": request.top_p, "seed": request.seed}
    return settings


class RequestCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=60)
        with self._lock, self._db:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS requests (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        keys = list(dict.fromkeys(keys))
        found: dict[str, Any] = {}
        with self._lock:
            for start in range(0, len(keys), 500):  # SQLite caps the number of bound parameters
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, value in self._db.execute(f"SELECT key, value FROM requests WHERE key IN ({marks})", chunk):
                    found[key] = json.loads(value)
        return found

    def put_many(self, items: Iterable[tuple[str, Any]]) -> None:
        rows = [(k, json.dumps(v)) for k, v in items]
        if not rows:
            return
        with self._lock, self._db:  # one transaction: all or nothing
            self._db.executemany("INSERT OR REPLACE INTO requests (key, value) VALUES (?, ?)", rows)

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM requests").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


def run_cached(
    cache: RequestCache | None,
    keys: Sequence[str | None],
    compute: Callable[[list[int]], Iterator[list[tuple[int, Any]]]],
    to_json: Callable[[Any], Any] = lambda v: v,
    from_json: Callable[[Any], Any] = lambda v: v,
) -> list[Any]:
    """Answer what the cache holds, compute the rest, and store each computed batch as soon as it is done.

    `keys[i]` is None for a request that must not be cached. `compute(indices)` yields lists of (index, value) pairs
    batch by batch. Requests sharing a key are computed once.
    """
    n = len(keys)
    results: list[Any] = [None] * n
    hits = cache.get_many(k for k in keys if k is not None) if cache is not None else {}
    first_with_key: dict[str, int] = {}
    todo, copies = [], []
    for i, key in enumerate(keys):
        if key is not None and key in hits:
            results[i] = from_json(hits[key])
        elif key is not None and key in first_with_key:
            copies.append((i, first_with_key[key]))
        else:
            if key is not None:
                first_with_key[key] = i
            todo.append(i)
    if todo:
        for batch in compute(todo):
            for i, value in batch:
                results[i] = value
            if cache is not None:
                cache.put_many((keys[i], to_json(v)) for i, v in batch if keys[i] is not None)
    for i, source in copies:
        results[i] = results[source]
    return results
