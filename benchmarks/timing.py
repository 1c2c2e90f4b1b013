"""Latency statistics over repeated runs of one prepared input."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Latency:
    """Milliseconds per run over ``runs`` timed runs (after the warm-up); ``cpu_ms``: the median CPU time the
    process spent per run, all its threads together (what a run costs in core time: unlike wall time, it hardly
    moves when other programs share the cores)."""

    median_ms: float
    p90_ms: float
    min_ms: float
    mean_ms: float
    runs: int
    cpu_ms: float | None = None

    @classmethod
    def from_times(cls, times_ms: Sequence[float], cpu_ms: Sequence[float] = ()) -> "Latency":
        t = np.asarray(times_ms, dtype=np.float64)
        if t.size == 0:
            raise ValueError("no timed runs")
        cpu = float(np.median(cpu_ms)) if len(cpu_ms) else None
        return cls(float(np.median(t)), float(np.percentile(t, 90)), float(t.min()), float(t.mean()), int(t.size),
                   cpu)

    @property
    def fps(self) -> float:
        return 1000.0 / self.median_ms


def wall_ms(step: Callable[[], Any]) -> float:
    """Wall-clock milliseconds of one call (for backends that return when the result is ready)."""
    start = time.perf_counter()
    step()
    return (time.perf_counter() - start) * 1e3


def cuda_ms(step: Callable[[], Any]) -> float:
    """GPU milliseconds of one call, measured with CUDA events."""
    import torch

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    step()
    end.record()
    end.synchronize()
    return float(start.elapsed_time(end))


def measure(step: Callable[[], Any], timer: Callable[[Callable[[], Any]], float], warmup: int,
            runs: int) -> Latency:
    """Run ``step`` ``warmup`` times untimed, then ``runs`` times timed with ``timer`` (and the process's CPU time)."""
    for _ in range(warmup):
        step()
    times, cpu = [], []
    for _ in range(runs):
        start = time.process_time()
        times.append(timer(step))
        cpu.append((time.process_time() - start) * 1e3)
    return Latency.from_times(times, cpu)
