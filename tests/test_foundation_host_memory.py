"""keep_freed_memory: inside the block large blocks come from the reused heap, not a fresh mmap per allocation;
after it, glibc's defaults are back (glibc only)."""
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
def new_mmapped_blocks():  # blocks mmapped while importing torch stay counted: count the difference
    before = libc.mallinfo2().hblks
    big = torch.empty(64 * 2**20, dtype=torch.uint8)  # 64 MB: above glibc's largest mmap threshold
    return libc.mallinfo2().hblks - before

with keep_freed_memory(enabled=sys.argv[1] == "on") as applied:
    inside = new_mmapped_blocks()
after = new_mmapped_blocks()  # the block has ended: glibc's defaults again
print(int(applied), inside, after)
"""


@pytest.mark.skipif(_glibc() is None, reason="glibc only")
@pytest.mark.parametrize("mode", ["on", "off"])
def test_large_blocks_stay_in_the_heap_only_when_applied(mode):
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    applied, inside, after = map(int, out.stdout.split())
    if mode == "on":
        assert applied == 1 and inside == 0
    else:  # negative control: glibc's default serves the 64 MB block with its own mmap
        assert applied == 0 and inside == 1
    assert after == 1  # scoped: once the block ends, large blocks are mmapped (and unmapped) as by default


def test_opt_out_by_environment(monkeypatch):
    from findap.host_memory import keep_freed_memory

    monkeypatch.setenv("FINDAP_KEEP_FREED_MEMORY", "0")
    with keep_freed_memory() as applied:
        assert applied is False


RELEASE_PROBE = r"""
import torch
from findap.host_memory import keep_freed_memory, release_free_memory

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

with keep_freed_memory():
    big = torch.ones(256 * 2**20, dtype=torch.uint8)  # faulted in: resident
    pinned = [torch.ones(1024) for _ in range(64)]  # later, smaller blocks: the freed big one is not the heap's top
    del big
    held = rss_mb()
    release_free_memory()
    print(held, rss_mb())
"""


@pytest.mark.skipif(_glibc() is None, reason="glibc only")
def test_release_hands_free_heap_pages_back_while_the_block_is_on():
    out = subprocess.run([sys.executable, "-c", RELEASE_PROBE], capture_output=True, text=True, check=True)
    held, released = map(float, out.stdout.split())
    assert held - released > 200  # MB: the freed 256 MB buffer was resident, and is not after the release


STAGE_PROBE = r"""
import sys
import findap.pipeline as pipeline
from findap.recipe import Recipe

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

held, kept = {}, []

def allocating_stage(recipe, ctx):
    # 300 MB of 1 KB objects (glibc heap, not pymalloc); every 16th one outlives the stage, so the freed ones
    # leave 15 KB holes between live blocks that glibc does not give back by itself
    blocks = [bytes(1024) + bytes([i % 251]) for i in range(300_000)]
    kept.extend(blocks[::16])
    del blocks
    held["rss"] = rss_mb()
    return {"kept": len(kept)}

pipeline.stage_function = lambda stage: allocating_stage
pipeline.run_stage(Recipe(name="probe", runs_dir=sys.argv[1]), "report")
print(held["rss"], rss_mb())
"""


@pytest.mark.skipif(_glibc() is None, reason="glibc only")
def test_pipeline_hands_a_finished_stage_memory_back(tmp_path):
    out = subprocess.run([sys.executable, "-c", STAGE_PROBE, str(tmp_path)], capture_output=True, text=True,
                         check=True)
    held, after = map(float, out.stdout.split()[-2:])
    assert held - after > 150  # MB (about 215 here; 0 without the trim): freed in the stage, released by run_stage
