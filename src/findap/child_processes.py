"""Processes findap starts end with the process that started them.

A killed `findap run` (or `findap curate`) must not leave work running: a rerun would start the same stage beside it,
and every forked helper keeps a copy of its parent's memory (datatrove's local executor starts a
`multiprocess.Manager` server by fork for every curation step, a copy of the curating process, which otherwise sits waiting
forever once its parent is SIGKILLed). Linux can deliver a signal to a process when its parent dies
(`prctl(PR_SET_PDEATHSIG)`); nothing else in the standard library or datatrove asks for it, hence this module.
Elsewhere (macOS, Windows) these are no-ops and children outlive a killed parent, as plain subprocesses do.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import threading

_PR_SET_PDEATHSIG = 1
_armed = False
_fork = {"die_with_parent": False, "parent_pid": 0}


def die_with_parent(parent_pid: int) -> None:
    """Have Linux SIGKILL this process when its parent dies; exit now if the parent (`parent_pid`) is already gone."""
    if sys.platform != "linux":
        return
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the request took effect
        os._exit(1)


def forked_children_die_with_this_process() -> None:
    """From now on, every process this one forks from its main thread gets the parent-death signal (idempotent).

    Only forks from the main thread: Linux sends the signal when the forking *thread* ends, so a child forked by a
    short-lived worker thread would be killed while its parent is alive. Exec'd subprocesses (`subprocess`,
    multiprocessing's spawn and forkserver) do not run fork hooks and are left alone: spawned stages call
    `die_with_parent` themselves, and the forkserver exits when its parent's pipe closes."""
    global _armed
    if _armed or sys.platform != "linux":
        return
    _armed = True
    os.register_at_fork(before=_note_fork, after_in_child=_child_after_fork)


def _note_fork() -> None:
    # runs in the parent just before fork(); the child starts with a copy of these values
    _fork["die_with_parent"] = threading.current_thread() is threading.main_thread()
    _fork["parent_pid"] = os.getpid()


def _child_after_fork() -> None:
    if _fork["die_with_parent"]:
        die_with_parent(_fork["parent_pid"])
