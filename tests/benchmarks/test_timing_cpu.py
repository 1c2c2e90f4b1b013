"""The harness's CPU time per run: the process's core time, counted apart from waiting."""
import time

from elsr.benchmarks.timing import Timed, wall_ms


def test_cpu_time_counts_work_not_waiting():
    def spin_then_sleep():
        end = time.process_time() + 0.01
        while time.process_time() < end:
            pass
        time.sleep(0.02)

    entry = Timed(spin_then_sleep, wall_ms)
    entry.run(0, 3)
    latency = entry.latency()
    assert latency.median_ms >= 29
    assert 9 <= latency.cpu_ms < latency.median_ms - 15
