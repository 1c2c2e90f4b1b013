"""elsr.runtime.pipeline: order, bounded memory, errors from any stage, interruption."""

import threading
import time

import numpy as np
import pytest

from elsr.runtime.pipeline import run_pipeline


def test_items_leave_in_order_whatever_each_stage_takes():
    rng = np.random.default_rng(0)
    delays = rng.random(300) * 1e-3

    def transform(i):
        time.sleep(delays[i])          # uneven work, as real frames have
        return i * 10

    out = []
    stats = run_pipeline(range(300), transform, out.append, depth=3)
    assert out == [i * 10 for i in range(300)]
    assert stats.items == 300 and [s.name for s in stats.stages] == ["read", "transform", "write"]
    assert all(s.busy_s >= 0 and s.wait_s >= 0 for s in stats.stages)


def test_a_slow_writer_holds_the_reader_back():
    """Memory stays flat: with a writer slower than the reader, the reader is never more than the queues
    (2 x depth) and the items in the hands of the three stages ahead."""
    depth, produced, lead = 2, [0], []

    def source():
        for i in range(60):
            produced[0] = i + 1
            yield np.zeros(1000, np.uint8)

    written = [0]

    def write(_):
        time.sleep(0.002)
        written[0] += 1
        lead.append(produced[0] - written[0])

    stats = run_pipeline(source(), lambda x: x, write, depth=depth)
    assert stats.items == 60
    assert max(lead) <= 2 * depth + 2 and max(stats.peak_queued) <= depth


@pytest.mark.parametrize("stage", ["read", "transform", "write"])
def test_the_first_error_of_any_stage_is_raised_and_every_thread_ends(stage):
    def source():
        for i in range(1000):
            if stage == "read" and i == 5:
                raise ValueError("read failed")
            yield i

    def transform(i):
        if stage == "transform" and i == 5:
            raise ValueError("transform failed")
        return i

    def write(i):
        if stage == "write" and i == 5:
            raise ValueError("write failed")

    before = threading.active_count()
    with pytest.raises(ValueError, match=f"{stage} failed"):
        run_pipeline(source(), transform, write, depth=2)
    assert threading.active_count() == before


def test_interruption_stops_the_other_stages():
    seen = []

    def write(i):
        seen.append(i)
        if i == 3:
            raise KeyboardInterrupt

    before = threading.active_count()
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(iter(range(10**9)), lambda i: i, write, depth=2)   # an endless source
    assert seen == [0, 1, 2, 3] and threading.active_count() == before


def test_depth_must_be_positive():
    with pytest.raises(ValueError, match="at least 1"):
        run_pipeline([], lambda i: i, print, depth=0)
