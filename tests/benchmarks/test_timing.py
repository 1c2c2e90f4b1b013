"""Latency statistics and the timing loop."""

import pytest

from elsr.benchmarks.timing import Latency, measure


def test_statistics():
    latency = Latency.from_times([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (latency.min_ms, latency.median_ms, latency.mean_ms, latency.runs) == (1.0, 3.0, 3.0, 5)
    assert latency.median_ms <= latency.p90_ms == pytest.approx(4.6)
    assert latency.fps == pytest.approx(1000 / 3)
    with pytest.raises(ValueError):
        Latency.from_times([])


def test_measure_warms_up_then_times():
    calls = []
    fake_times = iter([3.0, 1.0, 2.0])
    latency = measure(lambda: calls.append(1), lambda step: (step(), next(fake_times))[1], warmup=4, runs=3)
    assert len(calls) == 7 and latency.median_ms == 2.0 and latency.runs == 3
