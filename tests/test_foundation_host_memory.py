"""findap.host_memory: freed memory goes back to the OS after a stage (glibc) and on request (tcmalloc)."""
import os
import subprocess
import sys

import pytest

from findap.allocator import find_library, preload_env

GLIBC = sys.platform.startswith("linux")

TCMALLOC_PROBE = r"""
import torch
from findap.allocator import active
from findap.host_memory import release_free_memory

def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

assert active() == "tcmalloc"
big = torch.ones(256 * 2**20, dtype=torch.uint8)  # faulted in: resident
del big  # tcmalloc keeps the freed span in its page heap for the next allocation
held = rss_mb()
release_free_memory()
print(held, rss_mb())
"""


@pytest.mark.skipif(find_library("tcmalloc") is None, reason="tcmalloc is not installed here")
def test_release_hands_what_tcmalloc_keeps_back_to_the_os():
    env = preload_env(dict(os.environ, FINDAP_ALLOCATOR="tcmalloc"))
    out = subprocess.run([sys.executable, "-c", TCMALLOC_PROBE], capture_output=True, text=True, check=True, env=env)
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


@pytest.mark.skipif(not GLIBC, reason="glibc only")
def test_pipeline_hands_a_finished_stage_memory_back(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}  # glibc's malloc
    out = subprocess.run([sys.executable, "-c", STAGE_PROBE, str(tmp_path)], capture_output=True, text=True,
                         check=True, env=env)
    held, after = map(float, out.stdout.split()[-2:])
    assert held - after > 150  # MB (about 215 here; 0 without the trim): freed in the stage, released by run_stage
