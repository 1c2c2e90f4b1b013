"""The benchmark judges its own timings: spread, machine load and thread scaling mark a row unreliable."""

import dataclasses

import matplotlib.image
import numpy as np
from elsr.benchmarks.reliability import LOAD_MARGIN, MAX_SPREAD, assess, reliability_lines
from elsr.benchmarks.report import markdown_table, plot_latency_vs_psnr
from elsr.benchmarks.results import Row
from elsr.benchmarks.timing import Latency


def timed(name="ort-cpu:m.onnx", threads=1, times=(2.0, 2.0, 2.1), load=(0.5, 0.5)) -> Row:
    latency = Latency.from_times(times)
    return Row(name, "ort-cpu", "onnxruntime", "m.onnx", precision="int8", threads=threads,
               median_ms=latency.median_ms, p90_ms=latency.p90_ms, min_ms=latency.min_ms,
               load_before=load[0], load_after=load[1])


def test_a_steady_row_on_a_quiet_machine_is_reliable():
    rows = [timed(), timed(threads=2, times=(1.1, 1.1, 1.2))]
    assess(rows, usable_cores=2)
    assert [r.reliability for r in rows] == ["ok", "ok"]
    assert len(reliability_lines(rows, 2)) == 1   # how rows are judged; no call-out


def test_noisy_timings_are_marked():
    """A synthetic noisy timing: most runs at 2 ms, a tail at 6 ms (another process took the core)."""
    rng = np.random.default_rng(0)
    times = np.where(rng.random(30) < 0.3, 6.0, 2.0) + rng.random(30) * 0.05
    row = timed(times=tuple(times))
    assess([row], usable_cores=2)
    assert row.spread > MAX_SPREAD and row.reliability.startswith("unreliable: spread p90/median")
    assert "| unreliable: spread" in markdown_table([row])


def test_a_busy_machine_marks_every_row_and_is_called_out():
    rows = [timed(load=(1.0, 2 + LOAD_MARGIN + 0.1)), timed(threads=2, times=(1.0, 1.0, 1.0), load=(7.4, 9.9))]
    assess(rows, usable_cores=2)
    assert all("load average" in r.reliability for r in rows)
    assert "9.9 on 2 cores" in rows[1].reliability
    assert "**2 of 2 timed rows are unreliable (load average 1.0 to 9.9)**" in reliability_lines(rows, 2)[-1]


def test_two_threads_slower_than_one_is_called_out():
    rows = [timed(threads=1, times=(7.4, 7.4, 7.5)), timed(threads=2, times=(22.6, 22.6, 22.7)),
            timed(name="ort-cpu:other.onnx", threads=2, times=(1.0, 1.0, 1.0))]   # another model: not compared
    assess(rows, usable_cores=2)
    assert rows[0].reliability == "ok" and rows[2].reliability == "ok"
    assert rows[1].reliability == "unreliable: slower at 2 threads than at 1 (22.60 vs 7.40 ms)"


def test_failed_and_reference_rows_are_not_judged():
    rows = [Row("bicubic", "bicubic", "reference", None), dataclasses.replace(timed(), status="failed: x",
                                                                              median_ms=None)]
    assess(rows, usable_cores=2)
    assert [r.reliability for r in rows] == [None, None]


def test_every_plotted_row_has_its_own_colour_and_marker(tmp_path, monkeypatch):
    import matplotlib.axes

    seen = []
    original = matplotlib.axes.Axes.scatter

    def scatter(self, *args, **kwargs):
        seen.append((kwargs["color"], kwargs["marker"]))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", scatter)
    rows = [dataclasses.replace(timed(name=f"ort-cpu:m{i}.onnx"), psnr_y=29.0 + i / 100) for i in range(25)]
    result = type("R", (), {"rows": rows, "paper": {"target": {"frame_budget_ms": 33.3}},
                            "settings": {"input_shape": "1x3x180x320", "data": "Set5"}})()
    plot_latency_vs_psnr(result, tmp_path / "p.png")
    assert len(seen) == 25 and len(set(seen)) == 25
    assert matplotlib.image.imread(tmp_path / "p.png").ndim == 3


def test_the_spread_threshold_is_inclusive():
    row = dataclasses.replace(timed(), median_ms=2.0, p90_ms=2.0 * MAX_SPREAD)
    assess([row], usable_cores=2)
    assert row.reliability == "ok"
    row = dataclasses.replace(row, p90_ms=2.0 * MAX_SPREAD + 0.01)
    assess([row], usable_cores=2)
    assert row.reliability.startswith("unreliable: spread")
