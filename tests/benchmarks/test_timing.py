"""Latency statistics and the timing loop."""

import contextlib

import pytest

from elsr.benchmarks.timing import Latency, Timed, in_turns


def test_statistics():
    latency = Latency.from_times([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (latency.min_ms, latency.median_ms, latency.mean_ms, latency.runs) == (1.0, 3.0, 3.0, 5)
    assert latency.median_ms <= latency.p90_ms == pytest.approx(4.6)
    assert latency.fps == pytest.approx(1000 / 3)
    with pytest.raises(ValueError):
        Latency.from_times([])


def test_a_run_warms_up_then_times():
    calls = []
    fake_times = iter([3.0, 1.0, 2.0])
    entry = Timed(lambda: calls.append(1), lambda step: (step(), next(fake_times))[1])
    entry.run(4, 3)
    latency = entry.latency()
    assert len(calls) == 7 and latency.median_ms == 2.0 and latency.runs == 3 and entry.error is None


def recorder(name, calls, fail_after=None):
    """A Timed entry whose step logs its name (and raises once it has run ``fail_after`` times)."""
    def step():
        if fail_after is not None and calls.count(name) >= fail_after:
            raise RuntimeError(f"{name} broke")
        calls.append(name)
    return Timed(step, lambda s: (s(), 1.0)[1])


def test_in_turns_times_models_side_by_side_in_rotating_order():
    calls = []
    entries = [recorder("a", calls), recorder("b", calls), recorder("c", calls)]
    in_turns(entries, warmup=2, runs=5, turn=2)
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]                # warm-up, one model after another
    turns = calls[6:]                                                # each turn: 1 untimed + up to 2 timed
    assert turns[:9] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3            # round 0
    assert turns[9:18] == ["b"] * 3 + ["c"] * 3 + ["a"] * 3          # round 1: rotated
    assert turns[18:] == ["c"] * 2 + ["a"] * 2 + ["b"] * 2           # round 2: the last run each, rotated again
    assert [len(e.times) for e in entries] == [5, 5, 5] and [len(e.cpu) for e in entries] == [5, 5, 5]
    assert entries[0].latency().runs == 5


def test_a_failing_model_leaves_the_turns_and_the_others_finish():
    calls = []
    entries = [recorder("ok", calls), recorder("bad", calls, fail_after=4)]
    in_turns(entries, warmup=1, runs=6, turn=2)
    assert str(entries[1].error) == "bad broke" and entries[0].error is None
    assert len(entries[0].times) == 6 and calls.count("bad") == 4


def test_each_turn_runs_in_its_models_context():
    seen = []

    @contextlib.contextmanager
    def context(name):
        seen.append(("enter", name))
        yield
        seen.append(("exit", name))

    entries = [Timed(lambda n=n: seen.append(("run", n)), lambda s: (s(), 1.0)[1], lambda n=n: context(n))
               for n in ("a", "b")]
    in_turns(entries, warmup=0, runs=1, turn=1)
    assert seen == [("enter", "a"), ("exit", "a"), ("enter", "b"), ("exit", "b"),            # warm-up (none)
                    ("enter", "a"), ("run", "a"), ("run", "a"), ("exit", "a"),
                    ("enter", "b"), ("run", "b"), ("run", "b"), ("exit", "b")]
