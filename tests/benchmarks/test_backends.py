"""The backend table: selection by name/glob, one row per (backend, file, thread count), settled rows."""

from pathlib import Path

import pytest

from elsr.benchmarks.backends import BACKENDS, Backend, plan_rows, select_backends
from elsr.benchmarks.bench import run_benchmark
from elsr.benchmarks.config import BenchConfig
from elsr.errors import ElsrError

SIZE = (24, 32)  # LR height x width: tiny, for speed


def test_selection():
    names = [b.name for b in select_backends(["default"])]
    assert "torch-cpu" in names and "ort-cpu" in names and "torch-compile" not in names
    assert [b.name for b in select_backends(["default", "torch-compile"])][:3] == ["torch-cpu", "torch-cpu-cl",
                                                                                   "torch-compile"]
    assert {b.name for b in select_backends(["torch-cuda-*"])} == {"torch-cuda-fp32", "torch-cuda-fp16"}
    assert len(select_backends(["all"])) == len(BACKENDS)
    with pytest.raises(ElsrError, match="matches no backend"):
        select_backends(["nosuch"])


def test_plan(models, tmp_path):
    odd = tmp_path / "model.bin"
    odd.write_bytes(b"x")
    plans = plan_rows([models.weights, models.fp32, models.missing, odd], ["torch-cpu", "ort-cpu"], [1, 2])
    assert [(p.name, p.threads, p.status) for p in plans] == [
        ("torch-cpu:model.pt", 1, None), ("torch-cpu:model.pt", 2, None),
        ("ort-cpu:elsr_x4.onnx", 1, None), ("ort-cpu:elsr_x4.onnx", 2, None),
        ("ort-cpu:missing.onnx", None, "failed: no such file"),
        ("?:model.bin", None, "failed: no backend runs .bin files (use .mlpackage, .onnx, .ort, .pt, .pte, .pth, .tflite)")]


def test_unavailable_backend_gives_one_skipped_row(models):
    table = (Backend("never", "onnxruntime", build=None, unavailable=lambda: "not on this machine"),)
    plans = plan_rows([models.fp32, models.int8], ["all"], [1, 2], table)
    assert [(p.name, p.status) for p in plans] == [("never", "skipped: not on this machine")]


def test_one_entry_adds_a_backend(models):
    """A new backend is one table entry: here the ONNX runner under another name, always one thread."""
    from elsr.runtime.onnx_model import OnnxUpscaler

    table = (Backend("ort-one", "onnxruntime", lambda path, threads: OnnxUpscaler(path, threads=1)),)
    result = run_benchmark(BenchConfig(models=[models.fp32, models.broken], size=SIZE, runs=2, warmup=0,
                                       threads=[1, 2], backends=["all"]), table)
    assert [(r.name, r.threads, r.status[:6]) for r in result.rows] == [
        ("ort-one:elsr_x4.onnx", 1, "ok"), ("ort-one:elsr_x4.onnx", 2, "ok"),
        ("ort-one:broken.onnx", None, "failed")]  # a broken file: one row, not one per thread count


def test_no_files_is_an_error():
    with pytest.raises(ElsrError, match="nothing to benchmark"):
        BenchConfig()
    with pytest.raises(ElsrError, match="no such folder"):
        BenchConfig(weights=Path("w.pt"), data=Path("/no/such/folder"))
