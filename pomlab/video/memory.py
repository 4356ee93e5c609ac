"""Peak memory of a function call, on CUDA and on CPU.

CUDA: the caching allocator's peak counter. CPU: torch's CPU allocator keeps no peak, so we
record every allocation and free with ``torch.profiler`` (``profile_memory=True``): each event
carries the allocator's running total of allocated bytes, and the peak is the largest total
minus the total before the call. Only tensor memory is counted (not Python objects, not the
allocator's cached or freed pages), the same quantity as CUDA's ``max_memory_allocated``.
"""
from __future__ import annotations

import json
import os
import tempfile
from typing import Callable

import torch

from ..benchmark import peak_memory as cuda_peak_memory


def cpu_peak_tensor_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes of CPU tensor memory allocated while fn() runs, above the level at its start."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    fd, path = tempfile.mkstemp(suffix=".json")
    os.close(fd)
    try:
        prof.export_chrome_trace(path)
        with open(path) as f:
            events = json.load(f)["traceEvents"]
    finally:
        os.unlink(path)
    memory = sorted((e for e in events if e.get("name") == "[memory]"
                     and e["args"].get("Device Type") == 0), key=lambda e: e["ts"])
    if not memory:
        return 0
    first = memory[0]["args"]
    start = first["Total Allocated"] - first["Bytes"]          # the level before the first event
    return max(0, max(e["args"]["Total Allocated"] for e in memory) - start)


def peak_tensor_bytes(fn: Callable[[], object], device: torch.device | str = "cpu") -> int:
    """Peak tensor bytes of fn() on ``device`` (CUDA counter, or the CPU profiler method)."""
    if torch.device(device).type == "cuda":
        return cuda_peak_memory(fn, device)
    return cpu_peak_tensor_bytes(fn)
