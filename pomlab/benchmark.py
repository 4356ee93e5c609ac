"""Side-by-side timing (variants interleaved A B A B ..., medians: shared machines are noisy;
absolute times mean something only on a GPU), peak memory, device labels."""
from __future__ import annotations

import json
import os
import platform
import statistics
import tempfile
import time
from typing import Callable

import torch

from .checks import check_positive_int


def device_label(device: torch.device | str) -> str:
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda:{torch.cuda.get_device_name(device)}"
    return f"cpu:{platform.processor() or platform.machine()} x{torch.get_num_threads()} threads"


def synchronize(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(variants: dict[str, Callable[[], object]], *, repeats: int = 7,
                     warmup: int = 2, device: torch.device | str = "cpu") -> dict[str, float]:
    """Median seconds per call of each variant, timed A B A B ... after `warmup` untimed rounds."""
    check_positive_int("repeats", repeats)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for round_ in range(warmup + repeats):
        for name, fn in variants.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            if round_ >= warmup:
                samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def peak_memory(fn: Callable[[], object], device: torch.device | str) -> int:
    """Peak bytes of tensor memory allocated above the starting level while fn runs: CUDA's
    max_memory_allocated; on CPU, torch.profiler's allocation totals (cpu_peak_memory_by_range)."""
    device = torch.device(device)
    if device.type != "cuda":
        return cpu_peak_memory_by_range(fn)[0]
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    fn()
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def cpu_peak_memory_by_range(fn: Callable[[], object], prefix: str | None = None
                             ) -> tuple[int, dict[str, int]]:
    """(whole-call peak, {range name: peak}) in bytes above the level before fn, on CPU; ranges:
    the torch.profiler.record_function ranges whose name starts with `prefix` (none without)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    with tempfile.TemporaryDirectory() as folder:
        prof.export_chrome_trace(os.path.join(folder, "trace.json"))   # the allocator's totals
        with open(os.path.join(folder, "trace.json")) as f:
            events = json.load(f)["traceEvents"]
    memory = sorted((e for e in events if e.get("name") == "[memory]"
                     and e["args"].get("Device Type") == 0), key=lambda e: e["ts"])
    if not memory:
        return 0, {}
    start = memory[0]["args"]["Total Allocated"] - memory[0]["args"]["Bytes"]
    totals = [(e["ts"], e["args"]["Total Allocated"]) for e in memory]
    ranges = {}
    for e in events if prefix else ():
        if e.get("ph") == "X" and str(e.get("name", "")).startswith(prefix):
            begin, end = e["ts"], e["ts"] + e.get("dur", 0)
            inside = [total for ts, total in totals if begin <= ts <= end]
            ranges[e["name"]] = max(0, max(inside, default=start) - start)
    return max(0, max(t for _, t in totals) - start), ranges
