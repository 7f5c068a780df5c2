"""Where findap finds datasets: one rule for every stage and command.

A dataset path findap reads (a curation source's `path`, a distillation source's `path`, the files a FinEval task
names) is used as given when absolute, else resolved against one folder, the data root:

1. the recipe's top-level `data_root`, when the recipe (or a recipe it extends, or `--set data_root=...`) sets it;
   a relative value in a recipe file is relative to that file's folder, one given with `--set` to the current
   directory;
2. else the environment variable `FINDAP_DATA`;
3. else `../shared/data` beside the findap source checkout (the layout of findap's development machines).

Commands without a recipe (`findap eval`, `findap eval --list`) use 2 and 3. Other paths (models, `runs_dir`,
`train.groups[].train`, `align.pairs`: usually a run's own outputs) are relative to the current directory.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV = "FINDAP_DATA"
HOW_TO_POINT = f"set {ENV}=/path/to/data, or `data_root:` at the top of the recipe"


@dataclass(frozen=True)
class DataRoot:
    path: Path
    origin: str  # where the folder came from, for messages: "FINDAP_DATA", "recipe data_root", "the default"

    def resolve(self, location: str | Path) -> Path:
        """`location` as a path: absolute as given (after ~), relative under this root."""
        path = Path(location).expanduser()
        return path if path.is_absolute() else self.path / path

    def problem(self) -> str | None:
        """One line when the root is not a folder (every relative dataset path would fail with it), else None."""
        if self.path.is_dir():
            return None
        state = "is not a folder" if self.path.exists() else "does not exist"
        return f"data root {self.path} ({self.origin}) {state}: {HOW_TO_POINT}"


def checkout_default() -> Path:
    # src/findap/data_root.py -> the checkout's parent folder, where the development machines keep shared/data
    return Path(__file__).resolve().parents[3] / "shared" / "data"


def data_root(configured: str | Path | None = None) -> DataRoot:
    """The data root for a recipe whose top-level `data_root` is `configured` (already absolute when it came from
    a recipe file: findap.recipe resolves it against the file), or for a command without a recipe (None)."""
    if configured:
        return DataRoot(Path(configured).expanduser().resolve(), "recipe data_root")
    env = os.environ.get(ENV)
    if env:
        return DataRoot(Path(env).expanduser().resolve(), ENV)
    return DataRoot(checkout_default(), f"the default when neither the recipe's data_root nor {ENV} is set")
