"""Fault injection for tests: make a process kill itself at a named point of the code.

    POMLAB_FAULT=train_step:8          # SIGKILL at the 8th training step of each process
    POMLAB_FAULT=checkpoint_write:2    # ... writing its 2nd checkpoint (temp file not renamed)
    POMLAB_FAULT=train_step:8:hang     # stop there forever instead (e.g. to kill its parent)

Several faults may be given, comma-separated; counts are per process. Points: train_step (after
the optimiser step), checkpoint_write, evaluation (between sample chunks), merge (results.csv
not yet renamed), finalize (fits written, figures not). Unset, it costs one dict lookup.
"""
from __future__ import annotations

import os
import threading
from collections import Counter

from .processes import kill_self

FAULT_ENV = "POMLAB_FAULT"
POINTS = ("train_step", "checkpoint_write", "evaluation", "merge", "finalize")
ACTIONS = ("kill", "hang")

_hits: Counter = Counter()


def parse_faults(spec: str) -> dict[str, tuple[int, str]]:
    """"point:count[:action],..." -> {point: (count, action)}; clear errors for bad specs."""
    faults = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        point, count, action, *extra = item.split(":") + ["1", "kill"][len(item.split(":")) - 1:]
        if point not in POINTS or action not in ACTIONS or extra or not count.isdigit() or int(count) < 1:
            raise ValueError(f"{FAULT_ENV} must be point:count[:action] items with a point from "
                             f"{', '.join(POINTS)}, a count >= 1 and an action from "
                             f"{', '.join(ACTIONS)}; got {item!r}")
        faults[point] = (int(count), action)
    return faults


def fault_point(name: str) -> None:
    """Kill (or freeze) this process here when POMLAB_FAULT asks for it (see module doc)."""
    if not (spec := os.environ.get(FAULT_ENV)):
        return
    count, action = parse_faults(spec).get(name, (0, ""))
    _hits[name] += 1
    if _hits[name] == count:
        if action == "hang":
            threading.Event().wait()
        kill_self()
