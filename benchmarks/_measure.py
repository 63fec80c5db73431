"""Shared timing and peak-memory helpers for the benchmarks (run by hand, never by CI)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def median_seconds(fn: Callable[[], object], repeats: int, warmup: int = 2, device: str = "cpu") -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def peak_extra_bytes(fn: Callable[[], object], device: str = "cpu") -> int:
    """Peak bytes fn() allocates beyond what was live before it.

    CUDA: the caching allocator's peak. CPU: torch's profiler records every allocation
    and free; replaying each event's own bytes in time order gives the running total and
    its peak (the RSS of the process is too coarse for sub-MiB budgets).
    """
    fn()  # warm caches (decay matrices) so that only per-call memory is counted
    if device == "cuda":
        torch.cuda.synchronize()
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - base
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as recorded:
        fn()
    live = peak = 0
    for event in sorted(recorded.events(), key=lambda event: event.time_range.start):
        live += event.self_cpu_memory_usage
        peak = max(peak, live)
    return peak
