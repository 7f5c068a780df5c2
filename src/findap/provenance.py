"""What produced a result: content fingerprints of models, files and settings, and findap's version and commit.

A fingerprint is a short SHA-256 of content, never of a name: two model folders called `ckpt` differ, a retrain
at the same path differs, a copy of the same weights elsewhere is equal. Hashing a file's bytes costs about a
second per GB, so each file's digest is kept in `$FINDAP_CACHE/digests.sqlite` keyed by (path, size, mtime,
inode): a file is read once per version of its bytes, and every later fingerprint of it is a lookup.
"""
from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import sqlite3
import subprocess
import threading
from pathlib import Path
from typing import Any, Iterable

FINGERPRINT_CHARS = 16  # 64 bits: enough to tell versions apart, short enough to read in a table
_CHUNK = 1 << 22


def digest_text(*parts: Any) -> str:
    """Fingerprint of JSON-able values (dict key order never matters)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:FINGERPRINT_CHARS]


class _DigestCache:
    """(path, size, mtime_ns, inode) -> SHA-256 of the file's bytes, in SQLite (several processes may share it)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._where: Path | None = None

    def _open(self) -> sqlite3.Connection | None:
        from findap.models import cache_dir

        where = cache_dir() / "digests.sqlite"
        if self._db is not None and where == self._where:
            return self._db
        try:
            where.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(where, check_same_thread=False, timeout=60)
            with db:
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("CREATE TABLE IF NOT EXISTS digests (key TEXT PRIMARY KEY, sha256 TEXT NOT NULL)")
        except sqlite3.Error:  # a read-only cache folder: hash every time rather than fail
            return None
        self._db, self._where = db, where
        return db

    def digest(self, path: Path) -> str:
        st = path.stat()
        key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{st.st_ino}"
        with self._lock:
            db = self._open()
            row = db.execute("SELECT sha256 FROM digests WHERE key = ?", (key,)).fetchone() if db else None
        if row:
            return row[0]
        h = hashlib.sha256()
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                h.update(chunk)
        value = h.hexdigest()
        with self._lock:
            db = self._open()
            if db is not None:
                with db:
                    db.execute("INSERT OR REPLACE INTO digests (key, sha256) VALUES (?, ?)", (key, value))
        return value


_DIGESTS = _DigestCache()


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (computed once per version of the file, see the module docstring)."""
    return _DIGESTS.digest(Path(path))


def files_fingerprint(paths: Iterable[str | os.PathLike], root: str | os.PathLike | None = None) -> str:
    """Fingerprint of several files' contents and names (relative to `root` when given); a missing file counts as
    missing, so its appearance changes the fingerprint."""
    entries = []
    for p in sorted(Path(x) for x in paths):
        name = str(p.relative_to(root)) if root is not None else str(p)
        entries.append([name, file_digest(p) if p.is_file() else None])
    return digest_text(entries)


def tree_fingerprint(folder: str | os.PathLike, pattern: str = "**/*") -> str | None:
    """Fingerprint of every regular file under `folder` matching `pattern` (None when the folder is absent)."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    return files_fingerprint([p for p in folder.glob(pattern) if p.is_file() and not p.name.startswith(".")],
                             root=folder)


# Files at a model folder's top level that are not part of the model (markers and notes written beside it).
_NOT_MODEL = {"DONE", "README.md"}


def model_fingerprint(name_or_path: str | os.PathLike) -> str:
    """The content fingerprint of a model: every file at the top of its folder (weights, config, tokenizer, chat
    template). A hub id that is not a local folder is named by its id and, when the hub cache holds it, the
    snapshot's commit."""
    from findap.models import resolve_model

    source = resolve_model(name_or_path)
    folder = Path(source)
    if not folder.is_dir():
        return digest_text("hub", source, _hub_revision(source))
    files = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.name not in _NOT_MODEL]
    return files_fingerprint(files, root=folder)


def _hub_revision(repo_id: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # not a valid repo id, or no hub library: the id alone names it
        return None
    return Path(found).parent.name if isinstance(found, str) else None


def tensors_fingerprint(model) -> str | None:
    """Fingerprint of an in-memory model's parameters and buffers (an engine wrapping a model being trained); None
    for a model sharded across processes (each holds only its shard). Read through named_parameters/buffers, not
    state_dict(): FSDP's state_dict hooks would reshard a model that is unsharded for inference."""
    import torch

    tensors = [*model.named_parameters(), *model.named_buffers()]
    if torch.distributed.is_available() and torch.distributed.is_initialized() or \
            any(hasattr(t, "to_local") for _, t in tensors):
        return None
    h = hashlib.sha256()
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        h.update(name.encode("utf-8"))
        h.update(str(tuple(tensor.shape)).encode("ascii"))
        h.update(tensor.detach().to("cpu").contiguous().view(-1).view(dtype=torch.uint8).numpy().tobytes())
    return h.hexdigest()[:FINGERPRINT_CHARS]


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, Any]:
    """findap's version, and the git commit of its checkout (with `dirty` when it has uncommitted changes)."""
    from findap import __version__

    out: dict[str, Any] = {"findap": __version__}
    repo = Path(__file__).resolve().parents[2]
    if (repo / ".git").exists():
        try:
            commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                                    timeout=10, check=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            out["commit"] = commit
            out["dirty"] = bool(dirty)
        except (OSError, subprocess.SubprocessError):
            pass
    return out


def provenance(**fields: Any) -> dict[str, Any]:
    """The provenance block of a result file: code version and commit, UTC date, plus what the caller names."""
    from findap.allocator import active

    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat()
    return {**code_version(), "date": now, "allocator": active(), **fields}
