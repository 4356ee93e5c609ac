"""Child processes that die with the process that started them: a sweep's workers must notice
when the main process is killed outright (SIGKILL, the OOM killer), or they keep training as
orphans holding locks that a rerun finds busy."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1                # <linux/prctl.h>
WATCH_SECONDS = 0.5                 # the watch thread's polling interval


def kill_self() -> None:
    """SIGKILL this process (a worker in a C kernel would miss an exception; writes are atomic)."""
    os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))


def set_parent_death_signal(sig: int = getattr(signal, "SIGKILL", 9)) -> bool:
    """Ask Linux to send `sig` to this process when its parent *thread* exits (start workers from
    a thread that outlives them); False elsewhere or without prctl."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def die_with_parent(parent_pid: int | None = None) -> None:
    """End this process when `parent_pid` (default: the current parent) ends: Linux's parent-death
    signal and a thread watching getppid() (POSIX re-parents orphans). Call it first thing in a
    child; the parent's pid from before the start closes the race of a parent already dead."""
    parent_pid = os.getppid() if parent_pid is None else int(parent_pid)
    set_parent_death_signal()
    if os.name == "nt":                     # no re-parenting to watch for on Windows
        return
    if os.getppid() != parent_pid:          # the parent died before the signal was armed
        kill_self()

    def watch():
        while os.getppid() == parent_pid:
            threading.Event().wait(WATCH_SECONDS)
        kill_self()

    threading.Thread(target=watch, name="pomlab-parent-watch", daemon=True).start()
