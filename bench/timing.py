"""Timing helpers shared by the benchmarks: medians after a warm-up, with CUDA work included."""
import statistics
import time

import torch


def median_ms(fn, repeats, device, warmup=1):
    """Median wall time of ``fn()`` in milliseconds over ``repeats`` calls, after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def synchronize(device):
    """Wait for queued GPU work, so that it is counted in the time of what queued it."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
