"""Which malloc a findap process runs on: tcmalloc (or jemalloc) from the OS packages when present, else glibc's.

Why it matters: a CPU training step allocates and frees buffers of tens to hundreds of MB (LM-head chunks,
activations of long packed rows, gradients). glibc hands each block above its mmap threshold back to the OS on
free, and the kernel zero-fills the pages again on the next step's first touch. tcmalloc keeps freed spans in its
page heap and hands them back to the OS gradually as more memory is freed, so a step reuses the previous step's
pages without a threshold fitted to one machine; it was the fastest and the leanest of the allocators measured
(docs/results.md, "Host allocator"). jemalloc returns unused pages after a time decay (its dirty_decay_ms
setting), which a CPU training step can outlast: it is used only when asked for (tune it with its MALLOC_CONF).

They are shared libraries that must be loaded before the interpreter starts (LD_PRELOAD), and they are not on
PyPI, so the `findap` command re-executes itself once with LD_PRELOAD set when one is installed (Debian/Ubuntu:
`apt install libtcmalloc-minimal4`; Fedora: `dnf install gperftools-libs`; conda: `conda install gperftools`).
Processes it starts
(stages, workers) inherit the setting. `import findap` in a user's own program changes nothing.

FINDAP_ALLOCATOR: auto (default: tcmalloc when installed, else glibc), tcmalloc, jemalloc or glibc. Asking for a
library that is not installed is an error that names the package, not a silent fallback.
"""
from __future__ import annotations

import os
import sys
from functools import lru_cache
from pathlib import Path

from findap.errors import UsageError

ENV = "FINDAP_ALLOCATOR"
CHOICES = ("auto", "tcmalloc", "jemalloc", "glibc")
# set in the re-executed process: the choice was made (no second re-exec), and which library it preloaded
ACTIVE_ENV = "FINDAP_ALLOCATOR_ACTIVE"
LIBRARIES = {
    "tcmalloc": ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4"),
    "jemalloc": ("libjemalloc.so.2", "libjemalloc.so"),
}
PACKAGES = {"tcmalloc": "libtcmalloc-minimal4 (Debian/Ubuntu), gperftools-libs (Fedora) or gperftools (conda)",
            "jemalloc": "libjemalloc2 (Debian/Ubuntu) or jemalloc (Fedora, conda)"}
AUTO = ("tcmalloc",)  # what auto takes when installed, in order


class AllocatorUnavailable(UsageError):
    """FINDAP_ALLOCATOR names a library that is not installed here, or is not one of CHOICES."""


def library_dirs() -> list[Path]:
    """Where the OS, conda and the active prefix keep shared libraries (first match wins)."""
    dirs = [Path(sys.prefix) / "lib"]
    if os.environ.get("CONDA_PREFIX"):
        dirs.append(Path(os.environ["CONDA_PREFIX"]) / "lib")
    dirs += [Path(d) for d in ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64",
                               "/usr/lib", "/usr/local/lib", "/lib/x86_64-linux-gnu", "/lib64")]
    return dirs


def find_library(kind: str) -> Path | None:
    for folder in library_dirs():
        for name in LIBRARIES[kind]:
            if (folder / name).is_file():
                return folder / name
    return None


def requested(env: dict) -> str:
    choice = env.get(ENV, "auto").strip().lower() or "auto"
    if choice not in CHOICES:
        raise AllocatorUnavailable(f"{ENV}={env.get(ENV)!r} is not one of {', '.join(CHOICES)}")
    return choice


def choose(env: dict) -> tuple[str, Path | None]:
    """(allocator, library to preload or None for glibc) for `env`'s FINDAP_ALLOCATOR on this machine."""
    choice = requested(env)
    if choice == "glibc" or not sys.platform.startswith("linux"):
        return "glibc", None
    kinds = AUTO if choice == "auto" else (choice,)
    for kind in kinds:
        path = find_library(kind)
        if path is not None:
            return kind, path
    if choice != "auto":
        raise AllocatorUnavailable(f"{ENV}={choice}: no {LIBRARIES[choice][0]} found in "
                                   f"{', '.join(str(d) for d in library_dirs())}; install {PACKAGES[choice]}, "
                                   f"or set {ENV}=auto")
    return "glibc", None


def preload_env(env: dict) -> dict:
    """A copy of `env` that starts a process on the chosen allocator (LD_PRELOAD, kept in front of any other
    preloads) and marks the choice as made."""
    out = dict(env)
    kind, path = choose(env)
    if path is not None:
        others = [p for p in out.get("LD_PRELOAD", "").split(":") if p and Path(p).name not in LIBRARIES[kind]]
        out["LD_PRELOAD"] = ":".join([str(path)] + others)
    out[ACTIVE_ENV] = kind
    return out


@lru_cache(maxsize=1)
def active() -> str:
    """The malloc this process runs on: jemalloc or tcmalloc when one is mapped into it, else glibc."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return "glibc"
    for kind, names in LIBRARIES.items():
        if any(name in maps for name in names):
            return kind
    return "glibc"


def reexec_on_preferred_allocator() -> None:
    """Start this command again with LD_PRELOAD set, when a faster allocator is installed and not yet in use.
    Called first thing by the `findap` command, before torch is imported; returns when nothing needs to change."""
    if ACTIVE_ENV in os.environ or not sys.platform.startswith("linux") or not getattr(sys, "orig_argv", None):
        return
    if active() != "glibc":  # already preloaded (by the user, or by a parent's LD_PRELOAD)
        os.environ[ACTIVE_ENV] = active()
        return
    env = preload_env(os.environ)
    if env.get("LD_PRELOAD") == os.environ.get("LD_PRELOAD"):  # nothing to preload: glibc it is
        os.environ[ACTIVE_ENV] = env[ACTIVE_ENV]
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, list(sys.orig_argv), env)
