"""The paper comparison: measured and quoted figures kept apart, no made-up score."""

from pathlib import Path

from elsr.benchmarks.paper import PAPER, comparison, comparison_lines, realtime_fraction
from elsr.benchmarks.results import Row


def test_comparison():
    fast = Row("a", "a", "onnxruntime", "m.onnx", threads=1, median_ms=10.0, fps=100.0,
               realtime_fraction=realtime_fraction(100.0))
    slow = Row("b", "b", "torch", "m.pt", threads=1, median_ms=50.0, fps=20.0,
               realtime_fraction=realtime_fraction(20.0))
    failed = Row("c", "c", "torch", "m.pt", status="failed: x")
    info = comparison([slow, fast, failed], Path("Set5/HR"))
    assert info["fastest"]["name"] == "a" and info["fastest"]["meets_frame_budget"]
    assert info["rows_meeting_frame_budget"] == ["a (threads 1)"]
    assert fast.realtime_fraction == 100 / 30 and PAPER.frame_budget_ms == 1000 / 30
    assert info["score"].startswith("n/a: ") and "Set5/HR" in info["score"]
    text = "\n".join(comparison_lines(info))
    assert "27.34 dB" in text and "0.09 W" in text and "not measured here" in text


def test_no_rows_no_data():
    info = comparison([], None)
    assert info["fastest"] is None and "no --data" in info["score"]
    assert len(comparison_lines(info)) == 3
