"""Forked helpers end with the process that forked them (findap.child_processes), and only those forked by the main
thread: Linux's parent-death signal follows the forking thread, so a fork from a worker thread must not get it."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from helpers.processes import alive

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="the parent-death signal is Linux's prctl")

REPO = Path(__file__).resolve().parents[1]

# forks one child from the main thread and one from a thread that then ends; prints "main_pid thread_pid", sleeps
_PARENT = textwrap.dedent("""
    import os, sys, threading, time
    from findap.child_processes import forked_children_die_with_this_process
    if sys.argv[1] == "armed":
        forked_children_die_with_this_process()

    def fork_sleeper():
        pid = os.fork()
        if pid == 0:
            time.sleep(60)
            os._exit(0)
        return pid

    from_main = fork_sleeper()
    box = []
    thread = threading.Thread(target=lambda: box.append(fork_sleeper()))
    thread.start()
    thread.join()  # the forking thread has ended: a parent-death signal tied to it would fire now
    print(from_main, box[0], flush=True)
    time.sleep(60)
""")


def _wait_gone(pid: int, seconds: float) -> bool:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def _start(mode: str) -> tuple[subprocess.Popen, int, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    parent = subprocess.Popen([sys.executable, "-c", _PARENT, mode], stdout=subprocess.PIPE, text=True, env=env)
    from_main, from_thread = (int(p) for p in parent.stdout.readline().split())
    return parent, from_main, from_thread


@pytest.mark.parametrize("mode", ["armed", "plain"])
def test_children_forked_by_the_main_thread_die_with_a_killed_parent(mode):
    parent, from_main, from_thread = _start(mode)
    try:
        time.sleep(0.5)
        assert alive(from_thread), "a child forked by an ended thread was killed while its parent lives"
        assert alive(from_main)
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        gone = _wait_gone(from_main, 5)
        assert gone == (mode == "armed"), f"{mode}: the main thread's child {'outlived' if not gone else 'died with'} it"
        if mode == "armed":  # a thread's child is left alone: its parent-death signal would follow the thread
            assert alive(from_thread)
    finally:
        for pid in (from_main, from_thread):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
