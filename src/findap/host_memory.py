"""Keep freed host memory inside the process (glibc), so a CPU training step does not page-fault its buffers anew.

Why: glibc serves every allocation above its mmap threshold (32 MB at most) with a fresh `mmap` and gives it back
with `munmap` on free. A CPU training step allocates and frees many such buffers (LM-head logits chunks, the
activations and attention outputs of long packed rows, gradient buffers), and the kernel zero-fills each new one
page by page on first touch (the speed this setting alone buys: docs/results.md, "Trainer components").
`mallopt(M_MMAP_MAX, 0)` serves large blocks from the heap instead, and a
2 GiB `M_TRIM_THRESHOLD` keeps freed heap mapped, so the next step reuses the same, already-faulted pages.

jemalloc or tcmalloc through LD_PRELOAD would do the same, but they are not on PyPI and must be set before the
interpreter starts; mallopt works from inside the running process. The cost: memory freed inside the block is
returned to the OS only when the block ends, and `KeptHeapBound` bounds what it keeps meanwhile. Set
FINDAP_KEEP_FREED_MEMORY=0 to opt out. Not glibc (macOS, musl): nothing happens.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc malloc.h
M_MMAP_MAX = -4
DEFAULT_TRIM_THRESHOLD = 128 * 1024  # glibc's defaults, restored when the block ends
DEFAULT_MMAP_MAX = 65536
_depth = 0  # nested blocks: only the outermost applies and restores


def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    return libc if all(hasattr(libc, f) for f in ("mallopt", "malloc_trim", "gnu_get_libc_version")) else None


@contextlib.contextmanager
def keep_freed_memory(enabled: bool = True):
    """Within the block, large freed buffers stay in the process for reuse; yields whether glibc applied it.

    Scoped on purpose: outside a training loop's repeating pattern the same setting does harm. In one `findap run`
    process, evaluation after training (growing KV caches, three models loaded in turn) fragmented the mmap-less
    heap until the kernel killed the process. So when the block ends, glibc's defaults come back and
    `malloc_trim(0)` returns what was kept to the OS.
    """
    global _depth
    libc = _glibc() if enabled and os.environ.get("FINDAP_KEEP_FREED_MEMORY", "1") != "0" else None
    outermost = libc is not None and _depth == 0
    # both calls return 1 on success; the trim threshold is an int (2 GiB - 1 is its largest positive value)
    applied = outermost and bool(libc.mallopt(M_MMAP_MAX, 0)) and bool(libc.mallopt(M_TRIM_THRESHOLD, 2**31 - 1))
    _depth += libc is not None
    try:
        yield applied or (libc is not None and not outermost)
    finally:
        _depth -= libc is not None
        if outermost:
            libc.mallopt(M_MMAP_MAX, DEFAULT_MMAP_MAX)
            libc.mallopt(M_TRIM_THRESHOLD, DEFAULT_TRIM_THRESHOLD)
            libc.malloc_trim(0)


def release_free_memory() -> None:
    """Return the free pages the heap holds to the OS (glibc `malloc_trim`), keeping live memory where it is.

    The pipeline calls it after every stage (glibc otherwise keeps a finished stage's freed heap resident:
    docs/results.md, Curation, "Smaller measurements"). The training loops call it at each evaluation: it bounds
    what fragmentation of the mmap-less heap can hold resident over a long run, for the price of one step faulting
    its buffers in again.
    """
    libc = _glibc()
    if libc is not None:
        libc.malloc_trim(0)


class KeptHeapBound:
    """Caps what `keep_freed_memory` keeps: the training loops call `after_pass()` after every forward/backward
    pass and `after_step()` after every optimizer step; each returns the heap's free pages to the OS (`malloc_trim`)
    when resident memory has passed the ceiling, or, under an explicit budget, when the next pass could take it
    past the budget.

    Why: inside the block large buffers come from the heap, and micro-batches whose documents differ in length do
    not land in the same holes twice, so without a bound the kept heap fragments and grows step after step while
    what training needs stays the same. Trimming between passes, not only after each optimizer step, keeps it
    flat (the heap regrows within a step); a trim returns only pages that hold no live data, so the loss is
    unchanged.

    Trimming only past the ceiling is not enough over a whole run: a pass that starts just under the ceiling with
    a fragmented heap adds what does not fit its holes on top. So with a budget the bound also predicts: it remembers the most one pass has added to resident memory (`pass_growth`, measured from
    the pass's start to its end; inside the block freed memory stays resident, so the end is the pass's high-water
    mark) and trims before the next pass when resident memory plus that growth would pass the budget.

    The ceiling is the resident memory after the first step (its working set, faulted in) plus `slack`, and never
    above `limit_bytes` (an explicit memory budget), which is also the ceiling during the first step. A trim costs
    the next pass one round of page faults on what it reuses, so it is done only when needed.
    """

    def __init__(self, limit_bytes: int | None = None, slack: float = 0.10):
        self.limit_bytes, self.slack = limit_bytes, slack
        self.ceiling: int | None = limit_bytes  # until the first step has measured its working set
        self.measured = False
        self.trims = 0  # in all
        self.pass_growth = 0  # the most resident memory one pass has added, from its start to its end
        self._pass_start: int | None = None  # resident memory when the current pass began
        self._trims_before_step = 0

    @classmethod
    def for_training(cls, limit_bytes: int | None, checkpointing: bool) -> "KeptHeapBound":
        """The bound the training loops use: the first step's working set plus 10% without activation checkpointing,
        and no slack with it. Under checkpointing a pass's buffers are one layer's, so the kept heap buys no speed
        there, and its slack was what stood above the live memory (measured on bench/train_vs_trl.py's
        `findap-ckpt` steps: docs/results.md, "Trainer vs TRL: memory"). Without checkpointing the 10% stays."""
        return cls(limit_bytes, slack=0.0 if checkpointing else 0.10)

    def _trim_needed(self, rss: int) -> bool:
        if self.ceiling is not None and rss > self.ceiling:
            return True
        return self.limit_bytes is not None and rss + self.pass_growth > self.limit_bytes

    def _trim_if_needed(self, rss: int) -> None:
        """Trim when needed; the next pass starts from the resident memory left afterwards."""
        if rss and self._trim_needed(rss):
            release_free_memory()
            self.trims += 1
            rss = resident_bytes()
        self._pass_start = rss

    def after_pass(self) -> None:
        """Between the forward/backward passes of a step: trim when past the ceiling, or when the next pass could
        pass the budget (the heap grows inside a step too, as its passes free and reallocate activations of
        different shapes)."""
        rss = resident_bytes()
        if self._pass_start is not None and rss:
            self.pass_growth = max(self.pass_growth, rss - self._pass_start)
        self._trim_if_needed(rss)

    def after_evaluation(self) -> None:
        """After an evaluation between steps (dev loss, FinEval): return what it freed, so the next pass starts from
        live memory. Its passes run without the bound and leave their buffers in the kept heap, and the next
        training pass would add its own growth on top of them and could pass the budget."""
        release_free_memory()
        self.trims += 1
        self._pass_start = resident_bytes()

    def after_step(self) -> dict:
        """Trim when needed (as `after_pass`); the step's record: resident GB at its end (before any trim) and how
        many trims it took (between its passes and at its end)."""
        rss = resident_bytes()
        if rss == 0:  # no /proc: nothing to measure against
            return {}
        if not self.measured:
            self.measured = True
            first = int(rss * (1 + self.slack))
            self.ceiling = first if self.limit_bytes is None else min(first, self.limit_bytes)
        self._trim_if_needed(rss)
        trims, self._trims_before_step = self.trims - self._trims_before_step, self.trims
        return {"rss_gb": round(rss / 2**30, 3), "heap_trims": trims}


def resident_bytes() -> int:
    """This process's resident memory now (VmRSS), 0 where /proc is missing."""
    kb = _status_kb("VmRSS")
    return 0 if kb is None else kb * 1024


# ------------------------------------------------------------------------------------------ peak memory reports
def peak_memory() -> dict[str, float]:
    """This process's peak memory so far, in GB, for a stage's DONE summary.

    `peak_rss_gb`: the kernel's high-water mark of resident memory (VmHWM), which counts every page torch, the
    tokenizers and glibc held, not only tensors. `peak_rss_children_gb`: the largest peak among finished child
    processes (accelerate/torchrun workers), when there were any. `peak_gpu_gb`: torch's peak CUDA allocation,
    largest over devices, when this process used CUDA.
    """
    report: dict[str, float] = {}
    hwm_kb = _status_kb("VmHWM")
    if hwm_kb is not None:
        report["peak_rss_gb"] = round(hwm_kb / 2**20, 3)
    children_kb = _children_peak_kb()
    if children_kb:
        report["peak_rss_children_gb"] = round(children_kb / 2**20, 3)
    gpu = _cuda_peak_bytes()
    if gpu is not None:
        report["peak_gpu_gb"] = round(gpu / 2**30, 3)
    return report


def reset_peak_memory() -> bool:
    """Start a new peak from now: the RSS high-water mark (Linux: write 5 to /proc/self/clear_refs) and torch's CUDA
    peak. For several stages run in one process; returns whether the RSS mark could be reset."""
    cuda = _initialised_cuda()
    if cuda is not None:
        for device in range(cuda.device_count()):
            cuda.reset_peak_memory_stats(device)
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    if field == "VmHWM":  # no /proc (macOS): getrusage's peak, in bytes there
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak // 1024 if sys.platform == "darwin" else peak
    return None


def _children_peak_kb() -> int:
    import resource

    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def _initialised_cuda():
    """torch.cuda if this process already uses it; never imports torch or starts CUDA just to ask."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda


def _cuda_peak_bytes() -> int | None:
    cuda = _initialised_cuda()
    if cuda is None:
        return None
    return max(cuda.max_memory_allocated(device) for device in range(cuda.device_count()))
