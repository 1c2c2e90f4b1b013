"""Read, transform and write at once: three stages, each in its own thread, joined by bounded queues.

FFmpeg (decoding and encoding), onnxruntime and LiteRT release the GIL while they work, so the stages
overlap on separate cores: the slowest stage sets the pace and the others hide behind it. Each queue
holds at most ``depth`` items, so memory stays flat however long the input is, and items leave in the
order they came in (one thread per stage, first-in first-out queues). The first error in any stage
stops every stage and is raised in the caller, where the write stage runs; so is Ctrl-C.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Generic, Iterable, TypeVar

T = TypeVar("T")
U = TypeVar("U")
DEFAULT_DEPTH = 4       # items per queue: enough to ride out jitter, small enough to keep memory flat
POLL_S = 0.05           # how often a waiting stage checks whether another one failed
_END = object()         # after the last item


class _Stopped(Exception):
    """Another stage failed (or the caller was interrupted): leave quietly."""


@dataclass
class StageTime:
    """Where one stage's wall time went."""

    name: str
    busy_s: float = 0.0      # its own work
    wait_s: float = 0.0      # waiting for an item (starved) or for room downstream (held back)


@dataclass
class PipelineStats:
    items: int
    wall_s: float
    stages: list[StageTime]
    depth: int
    peak_queued: list[int] = field(default_factory=list)   # the most items ever waiting in each queue

    def split(self) -> str:
        """'read 0.2 s busy + 1.3 s waiting, ...' for a log line."""
        return ", ".join(f"{s.name} {s.busy_s:.2f} s busy + {s.wait_s:.2f} s waiting" for s in self.stages)


class _Queue(Generic[T]):
    """A bounded queue whose waits give up when the pipeline stops, and count as the stage's waiting time."""

    def __init__(self, depth: int, stop: threading.Event) -> None:
        self._queue: queue.Queue = queue.Queue(depth)
        self._stop = stop
        self.peak = 0

    def put(self, item, stage: StageTime) -> None:
        started = time.perf_counter()
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                self._queue.put(item, timeout=POLL_S)
                break
            except queue.Full:
                continue
        self.peak = max(self.peak, self._queue.qsize())
        stage.wait_s += time.perf_counter() - started

    def get(self, stage: StageTime):
        started = time.perf_counter()
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                item = self._queue.get(timeout=POLL_S)
                break
            except queue.Empty:
                continue
        stage.wait_s += time.perf_counter() - started
        return item


def run_pipeline(source: Iterable[T], transform: Callable[[T], U], write: Callable[[U], None],
                 depth: int = DEFAULT_DEPTH, names: tuple[str, str, str] = ("read", "transform", "write")
                 ) -> PipelineStats:
    """``write(transform(item))`` for every item of ``source``, in order, the three steps overlapping.

    ``source`` is iterated in one thread, ``transform`` runs in a second, ``write`` in the calling thread.
    """
    if depth < 1:
        raise ValueError(f"queue depth must be at least 1, got {depth}")
    stop = threading.Event()
    errors: list[BaseException] = []
    stages = [StageTime(name) for name in names]
    decoded, transformed = _Queue(depth, stop), _Queue(depth, stop)

    def read() -> None:
        items = iter(source)
        while True:
            started = time.perf_counter()
            item = next(items, _END)
            stages[0].busy_s += time.perf_counter() - started
            decoded.put(item, stages[0])
            if item is _END:
                return

    def work() -> None:
        while True:
            item = decoded.get(stages[1])
            if item is not _END:
                started = time.perf_counter()
                item = transform(item)
                stages[1].busy_s += time.perf_counter() - started
            transformed.put(item, stages[1])
            if item is _END:
                return

    def guarded(stage: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                stage()
            except _Stopped:
                pass
            except BaseException as exc:  # noqa: BLE001 - handed to the caller's thread
                errors.append(exc)
                stop.set()
        return run

    threads = [threading.Thread(target=guarded(step), name=f"elsr-{name}", daemon=True)
               for step, name in ((read, names[0]), (work, names[1]))]
    started, count = time.perf_counter(), 0
    for thread in threads:
        thread.start()
    try:
        while True:
            item = transformed.get(stages[2])
            if item is _END:
                break
            begun = time.perf_counter()
            write(item)
            stages[2].busy_s += time.perf_counter() - begun
            count += 1
    except _Stopped:
        pass
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return PipelineStats(count, time.perf_counter() - started, stages, depth, [decoded.peak, transformed.peak])
