"""keep_freed_memory: large blocks come from the reused heap, not a fresh mmap per allocation (glibc only)."""
import subprocess
import sys

import pytest

from findap.host_memory import _glibc

PROBE = r"""
import ctypes, sys, torch
from findap.host_memory import keep_freed_memory

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
applied = keep_freed_memory() if sys.argv[1] == "on" else False
before = libc.mallinfo2().hblks  # blocks mmapped while importing torch stay counted
big = torch.empty(64 * 2**20, dtype=torch.uint8)  # 64 MB: above glibc's largest mmap threshold
print(int(applied), libc.mallinfo2().hblks - before)
"""


@pytest.mark.skipif(_glibc() is None, reason="glibc only")
@pytest.mark.parametrize("mode", ["on", "off"])
def test_large_blocks_stay_in_the_heap_only_when_applied(mode):
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    applied, new_mmapped_blocks = map(int, out.stdout.split())
    if mode == "on":
        assert applied == 1 and new_mmapped_blocks == 0
    else:  # negative control: glibc's default serves the 64 MB block with its own mmap
        assert applied == 0 and new_mmapped_blocks == 1


def test_opt_out_by_environment(monkeypatch):
    import findap.host_memory as hm

    monkeypatch.setattr(hm, "_applied", None)
    monkeypatch.setenv("FINDAP_KEEP_FREED_MEMORY", "0")
    assert hm.keep_freed_memory() is False
