"""Block-level checkpoints for a resumable curation.

Each block writes its result as one JSON file, atomically (findap.io.write_json: temp file + os.replace); the
file's existence is the block's completion marker, as datatrove's completion markers are for its tasks. A rerun
loads finished blocks and recomputes only the rest. Checkpoints live under a folder named by a hash of everything
that determines the result (curate section, model, seed), so changing the recipe never reuses stale blocks.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable

from findap.io import write_json


def work_dir(stage_dir: Path, *parts: Any) -> Path:
    key = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]
    path = Path(stage_dir) / "work" / key
    path.mkdir(parents=True, exist_ok=True)
    return path


def cached_block(path: Path, compute: Callable[[], Any]) -> tuple[Any, bool]:
    """(value, resumed): the stored value when the block finished before, else compute and store it."""
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8")), True
    value = compute()
    write_json(path, value)
    return value, False
