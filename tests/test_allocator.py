"""findap.allocator: which malloc the `findap` command runs on, and that results record it."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from findap import allocator
from findap.allocator import AllocatorUnavailable, choose, preload_env


@pytest.fixture
def libs(tmp_path, monkeypatch):
    """A library folder of our own in place of the system's (choose() only asks whether the file is there)."""
    monkeypatch.setattr(allocator, "library_dirs", lambda: [tmp_path])
    return tmp_path


def test_auto_takes_tcmalloc_when_installed_else_glibc(libs):
    assert choose({}) == ("glibc", None)
    (libs / "libjemalloc.so.2").touch()
    assert choose({}) == ("glibc", None)  # jemalloc only when asked for: its decay timer can outlast a CPU step
    assert choose({"FINDAP_ALLOCATOR": "jemalloc"}) == ("jemalloc", libs / "libjemalloc.so.2")
    (libs / "libtcmalloc_minimal.so.4").touch()
    assert choose({}) == ("tcmalloc", libs / "libtcmalloc_minimal.so.4")
    assert choose({"FINDAP_ALLOCATOR": "glibc"}) == ("glibc", None)


def test_asking_for_a_missing_allocator_names_the_package(libs):
    with pytest.raises(AllocatorUnavailable, match="libtcmalloc-minimal4"):
        choose({"FINDAP_ALLOCATOR": "tcmalloc"})
    with pytest.raises(AllocatorUnavailable, match="not one of auto, tcmalloc, jemalloc, glibc"):
        choose({"FINDAP_ALLOCATOR": "mimalloc"})


def test_preload_keeps_other_preloads_and_marks_the_choice(libs):
    lib = libs / "libtcmalloc_minimal.so.4"
    lib.touch()
    env = preload_env({"LD_PRELOAD": "/opt/libfoo.so"})
    assert env["LD_PRELOAD"] == f"{lib}:/opt/libfoo.so" and env[allocator.ACTIVE_ENV] == "tcmalloc"
    again = preload_env(env)  # not listed twice
    assert again["LD_PRELOAD"] == env["LD_PRELOAD"]
    assert "LD_PRELOAD" not in preload_env({"FINDAP_ALLOCATOR": "glibc"})


def test_a_wrong_setting_is_one_line_from_the_command():
    env = dict(os.environ, FINDAP_ALLOCATOR="mimalloc")
    env.pop(allocator.ACTIVE_ENV, None)
    out = subprocess.run([sys.executable, "-m", "findap", "eval", "--list"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 2 and out.stderr.strip().splitlines() == [
        "error: FINDAP_ALLOCATOR='mimalloc' is not one of auto, tcmalloc, jemalloc, glibc"]


@pytest.mark.skipif(allocator.find_library("tcmalloc") is None, reason="tcmalloc is not installed here")
@pytest.mark.parametrize("setting", ["auto", "glibc"])
def test_the_command_runs_on_the_chosen_allocator_and_results_say_so(tmp_path, tiny_model_dir, setting):
    env = {k: v for k, v in os.environ.items() if k not in (allocator.ACTIVE_ENV, "LD_PRELOAD")}
    env["FINDAP_ALLOCATOR"] = setting
    out = subprocess.run([sys.executable, "-m", "findap", "eval", "--model", tiny_model_dir, "--tasks", "fpb",
                          "--limit", "2", "--precision", "fp32", "--out", str(tmp_path)],
                         capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    results = list(Path(tmp_path).rglob("fpb.direct.json"))
    assert len(results) == 1
    recorded = json.loads(results[0].read_text())["provenance"]["allocator"]
    assert recorded == ("tcmalloc" if setting == "auto" else "glibc")  # the re-executed process really runs on it
