"""Child processes that die with the process that started them.

A sweep's worker processes hold its run locks and write into its folder. When the main process
is killed outright (SIGKILL, the OOM killer) nothing in it runs, so the workers must notice by
themselves: otherwise they keep training as orphans (parent pid 1), holding the locks that a
rerun then finds busy. `die_with_parent` makes the calling process follow its parent: on Linux
through the kernel's parent-death signal (prctl PR_SET_PDEATHSIG), and on every system through a
daemon thread that watches the parent pid (POSIX systems: an orphan is re-parented, so
getppid() changes).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1                # <linux/prctl.h>
WATCH_SECONDS = 0.5                 # the watch thread's polling interval


def _kill_self() -> None:
    # SIGKILL, not an exception: a worker busy in a C kernel or waiting on a queue would not see
    # one, and there is nothing to clean (every file write is atomic).
    os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def set_parent_death_signal(sig: int = getattr(signal, "SIGKILL", 9)) -> bool:
    """Ask Linux to send `sig` to this process when its parent dies; False elsewhere or when
    prctl is unavailable. The kernel sends it when the *thread* that started this process
    exits, so start workers from a thread that outlives them (the sweep's calling thread)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int | None = None) -> None:
    """Make this process end when `parent_pid` (default: the current parent) ends.

    Call it first thing in a child process. Passing the pid the parent had when it started the
    child closes the race where the parent died before this call (the child is then already an
    orphan and ends at once)."""
    parent_pid = os.getppid() if parent_pid is None else int(parent_pid)
    set_parent_death_signal()
    if os.name == "nt":                     # no re-parenting to watch for on Windows
        return
    if _parent_gone(parent_pid):            # the parent died before the signal was armed
        _kill_self()

    def watch():
        # Everywhere (and a second line of defence on Linux): once the parent is gone, the
        # child is re-parented (to init or a subreaper) and getppid() changes.
        while not _parent_gone(parent_pid):
            threading.Event().wait(WATCH_SECONDS)
        _kill_self()

    threading.Thread(target=watch, name="pomlab-parent-watch", daemon=True).start()


def _parent_gone(parent_pid: int) -> bool:
    return os.getppid() != parent_pid
