"""Latency statistics over repeated runs of one prepared input, and the timing loop: models timed in turns."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ContextManager, Sequence

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


TURN_RUNS = 2         # timed runs per turn, after one untimed run that settles the model back in (caches, threads);
#                       short turns pair the models' runs closely in time (with 5, our FP32 and INT8 ExecuTorch
#                       programs, about 10% apart, came out in the wrong order in 2 of 11 runs here; with 2, in
#                       none of 12)
TURN_PAUSE_S = 0.02   # idle before each turn: the previous model's thread pool stops spinning (onnxruntime's and
#                       XNNPACK's threads spin a while after a run; measured here, 20 ms is enough for their CPU
#                       time to leave the next model's)

Step = Callable[[], Any]


@dataclass
class Timed:
    """One model's step (a run on its prepared input), how a run is timed, the context its runs need (process-wide
    settings such as thread counts), and what was measured: wall and process CPU milliseconds per timed run, or
    the error that stopped it."""

    step: Step
    timer: Callable[[Step], float]
    context: Callable[[], ContextManager] = contextlib.nullcontext
    times: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)
    error: Exception | None = None

    def run(self, untimed: int, timed: int) -> None:
        """``untimed`` runs, then ``timed`` timed ones; an error is kept, not raised."""
        try:
            with self.context():
                for _ in range(untimed):
                    self.step()
                for _ in range(timed):
                    start = time.process_time()
                    self.times.append(self.timer(self.step))
                    self.cpu.append((time.process_time() - start) * 1e3)
        except Exception as exc:  # noqa: BLE001 - one failing model must not stop the others' turns
            self.error = exc

    def latency(self) -> Latency:
        return Latency.from_times(self.times, self.cpu)


def in_turns(entries: Sequence[Timed], warmup: int, runs: int, turn: int = TURN_RUNS,
             pause_s: float = TURN_PAUSE_S) -> None:
    """Warm every entry up (``warmup`` runs), then time them in turns until each has ``runs`` timed runs: round
    after round, each entry (after ``pause_s`` idle) one untimed run and ``turn`` timed ones, the order rotating
    each round. Models timed side by side like this meet the same load from other programs, so their ratios hold
    on a shared machine, where models timed one after another meet whatever load each one's minute brings. An
    entry whose step raises keeps its error and leaves the rotation."""
    for entry in entries:
        entry.run(warmup, 0)
    rounds = -(-runs // turn)
    for r in range(rounds):
        live = [e for e in entries if e.error is None]
        for entry in live[r % len(live):] + live[:r % len(live)] if live else []:
            time.sleep(pause_s)
            entry.run(1, min(turn, runs - len(entry.times)))
