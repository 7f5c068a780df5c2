"""Copy the shipped demo files to a folder of your own, as the starting point for your data.

    findap.demo.export_demo("my_data/")   # -> my_data/sentiment.jsonl, ...

Edit the copies (same fields, see docs/demo.md), check them with `load_demo(name, path=...)`, and point a recipe
at them.
"""
from __future__ import annotations

import os
from pathlib import Path

from findap.demo.catalog import DEMO_SETS
from findap.errors import UsageError
from findap.demo.load import data_path
from findap.io import write_bytes


class WouldOverwrite(UsageError, FileExistsError):
    """The destination already holds a demo file (a FileExistsError, for callers that catch that)."""


def export_demo(dest: str | os.PathLike, names: list[str] | None = None, *, overwrite: bool = False) -> list[Path]:
    """Write the demo files `names` (default: all) into `dest`; refuses to replace files unless `overwrite`."""
    dest = Path(dest)
    chosen = list(DEMO_SETS) if names is None else names
    targets = [(data_path(name), dest / DEMO_SETS[name].file) for name in chosen]
    existing = [str(target) for _, target in targets if target.exists()]
    if existing and not overwrite:
        raise WouldOverwrite(f"would overwrite {', '.join(existing)}",
                             "pass --overwrite (overwrite=True in Python) to replace them")
    return [write_bytes(target, source.read_bytes()) for source, target in targets]
