"""Side-by-side timing: variants interleaved (A B A B ...), medians, device labels.

Shared machines are noisy, so every comparison runs its variants in alternation within one
process and reports medians and ratios; absolute times mean something only on a GPU.
"""
from __future__ import annotations

import platform
import statistics
import time
from typing import Callable

import torch


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
    """Median seconds per call of each variant, timed in alternation A B A B ... ."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    synchronize(device)
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            samples[name].append(time.perf_counter() - start)
    return {name: statistics.median(times) for name, times in samples.items()}


def peak_memory(fn: Callable[[], object], device: torch.device | str) -> int:
    """Peak bytes allocated above the starting level while fn runs.

    CUDA: the caching allocator's peak (torch.cuda.max_memory_allocated). CPU: the CPU allocator
    has no peak counter, so fn runs under torch.profiler with profile_memory=True and each
    op's net allocation is replayed in time order, allocations at the op's start and frees at
    its end (op granularity: a workspace allocated and freed inside one leaf op is not seen,
    a free inside a larger op counts when that op ends); the peak of the running sum is
    returned.
    """
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        fn()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    changes = sorted((e.time_range.start if e.self_cpu_memory_usage > 0 else e.time_range.end,
                      e.self_cpu_memory_usage) for e in prof.events() if e.self_cpu_memory_usage)
    live = peak = 0
    for _, change in changes:
        live += change
        peak = max(peak, live)
    return peak
