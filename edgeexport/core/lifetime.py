"""Worker processes that do not outlive the process that started them.

A build's export workers hold 0.5-0.9 GB each and rename files into the variant directories:
left running after their build is killed (``kill -9``, SIGTERM, a closed terminal), they
would go on writing while a rerun holds the lock. Linux's parent-death signal ends them with
their parent; elsewhere they keep the Ctrl-C behaviour of multiprocessing only.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int) -> None:
    """In a child process: be killed (SIGKILL) when the parent dies; exit now if it already
    has (the parent may die between the fork and this call). ``parent_pid``: the parent's pid
    as the parent knew it. An initializer of a ProcessPoolExecutor."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(1)
