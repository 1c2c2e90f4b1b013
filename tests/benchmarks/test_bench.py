"""A whole run on tiny inputs: every backend row, broken and missing models, quality equal to `elsr eval`."""

from pathlib import Path

import pytest
import torch

from elsr.benchmarks.backends import BACKENDS, RowPlan
from elsr.benchmarks.bench import process_groups, run_benchmark
from elsr.benchmarks.config import BenchConfig
from elsr.data.metrics import METRIC_KEYS as KEYS
from elsr.runtime.evaluate import EvalConfig, evaluate

SIZE = (24, 32)  # LR height x width: tiny, for speed


@pytest.fixture(scope="module")
def result(models):
    cfg = BenchConfig(weights=models.weights, models=[models.fp32, models.int8, models.broken, models.missing],
                      data=models.hr, size=SIZE, runs=3, warmup=1, threads=[1])
    return run_benchmark(cfg)


def by_name(result):
    return {row.name: row for row in result.rows}


def test_rows_come_from_the_table(result):
    rows = by_name(result)
    for name in ("torch-cpu:model.pt", "torch-cpu-cl:model.pt", "ort-cpu:elsr_x4.onnx", "ort-cpu:elsr_x4_int8.onnx"):
        assert rows[name].status == "ok", rows[name]
        assert rows[name].threads == 1 and rows[name].input_shape == "1x3x24x32"
    assert "torch-compile:model.pt" not in rows  # off by default
    assert rows["ort-cpu:elsr_x4_int8.onnx"].precision == "int8 qat"
    assert rows["ort-cpu:elsr_x4.onnx"].precision == "fp32"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU rows")
def test_cuda_rows_are_skipped_without_a_gpu(result):
    rows = by_name(result)
    assert rows["torch-cuda-fp32"].status == "skipped: no CUDA GPU"
    assert rows["torch-cuda-fp16"].status == "skipped: no CUDA GPU"


def test_broken_and_missing_models_give_rows_with_reasons(result):
    rows = by_name(result)
    broken, missing = rows["ort-cpu:broken.onnx"], rows["ort-cpu:missing.onnx"]
    assert broken.status.startswith("failed: ") and "broken.onnx" in broken.status and "cannot load" in broken.status
    assert missing.status == "failed: no such file"
    assert broken.median_ms is None and missing.psnr_y is None


def test_latency_figures_are_consistent(result):
    timed = [row for row in result.rows if row.ok and row.kind != "reference"]
    assert len(timed) == 4
    for row in timed:
        assert 0 < row.min_ms <= row.median_ms <= row.p90_ms and row.runs == 3
        assert row.fps == pytest.approx(1000 / row.median_ms)
        assert row.realtime_fraction == pytest.approx(row.fps / 30)
        assert row.gmac_per_s > 0 and row.peak_rss_bytes > 0 and row.size_bytes > 0 and row.params == 3469


def test_psnr_equals_evaluate(result, models):
    rows = by_name(result)
    for name, path in (("torch-cpu:model.pt", models.weights), ("ort-cpu:elsr_x4.onnx", models.fp32),
                       ("ort-cpu:elsr_x4_int8.onnx", models.int8)):
        expected = evaluate(EvalConfig(model=path, data=models.hr, device="cpu", progress=False))["mean"]
        assert {k: getattr(rows[name], k) for k in KEYS} == expected["model"]
        assert rows[name].quality_source.startswith(f"elsr eval --model {path}")
    assert {k: getattr(rows["bicubic"], k) for k in KEYS} == expected["bicubic"]
    assert rows["bicubic"].kind == "reference" and rows["bicubic"].median_ms is None


def test_paper_comparison(result):
    assert result.paper["target"]["frame_budget_ms"] == pytest.approx(1000 / 30)
    assert result.paper["fastest"]["meets_frame_budget"]
    assert result.paper["score"].startswith("n/a: ") and "power is not measured here" in result.paper["score"]


def test_rows_are_grouped_by_the_process_that_times_them_in_turns():
    table = {b.name: b for b in BACKENDS}
    a, b = Path("a.pte"), Path("b.pte")
    plans = [RowPlan(table["ort-cpu"], Path("m.onnx"), 1), RowPlan(table["executorch"], a, 1),
             RowPlan(table["executorch"], a, 2), RowPlan(table["executorch"], b, 1),
             RowPlan(table["executorch"], b, 2), RowPlan(table["tflite"], Path("m.tflite"), 2),
             RowPlan(table["executorch"], None, status="skipped: no ExecuTorch runtime")]
    # this process: every row but ExecuTorch's timed ones; one process per ExecuTorch thread count
    assert process_groups(plans) == [[0, 5, 6], [1, 3], [2, 4]]


def test_a_process_that_cannot_measure_gives_a_failed_row_per_model(tmp_path):
    from elsr.benchmarks.bench import measure_rows_in_own_process

    table = {b.name: b for b in BACKENDS}
    plans = [RowPlan(table["executorch"], tmp_path / name, 2) for name in ("a.pte", "b.pte")]
    unpicklable = lambda: None  # noqa: E731 - the child never gets its arguments
    cfg = BenchConfig(models=[p.model for p in plans], size=SIZE)
    measured = measure_rows_in_own_process(plans, cfg, unpicklable)
    assert [(m.row.name, m.row.threads, m.loaded) for m in measured] == [
        ("executorch:a.pte", 2, False), ("executorch:b.pte", 2, False)]
    assert all(m.row.status.startswith("failed: ") and "pickle" in m.row.status.lower() for m in measured)
