"""Host memory: how much a process holds (resident, peak) and giving freed memory back to the OS between stages.

Which malloc runs the process (and so how freed buffers are reused during training) is chosen before it starts:
findap.allocator. This module only measures and releases.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import sys


def release_free_memory() -> None:
    """Return the free memory the allocator holds to the OS, keeping live memory where it is: tcmalloc's
    ReleaseFreeMemory, glibc's malloc_trim (jemalloc returns it by itself, on its decay timer).

    The pipeline calls it after every stage (a finished stage's freed buffers would otherwise stay resident:
    docs/results.md, Curation, "Smaller measurements"); on glibc the training loop also calls it after each dev
    evaluation (findap.training.loop.ResidentMemory).
    """
    from findap.allocator import active

    kind = active()
    if kind == "tcmalloc":
        release = getattr(ctypes.CDLL(None), "MallocExtension_ReleaseFreeMemory", None)
        if release is not None:
            release()
    elif kind == "glibc" and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        except OSError:
            return
        if hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)


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
