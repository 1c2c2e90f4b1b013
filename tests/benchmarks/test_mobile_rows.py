"""Benchmark rows for the mobile artifacts: .ort through onnxruntime, .tflite through LiteRT (float and uint8 I/O)."""

import importlib.util

import pytest

from elsr.benchmarks.bench import run_benchmark
from elsr.benchmarks.config import BenchConfig
from elsr.cli.bench import module_main as bench_main
from elsr.export.formats import FORMATS
from elsr.export.onnx_int8 import qat_model_from_onnx
from elsr.export.request import ExportRequest
from elsr.quant.fake_quant import QuantELSR
from elsr.quant.params import quant_params
from elsr.runtime.evaluate import EvalConfig, evaluate

SIZE = (24, 32)
HAS_LITERT = importlib.util.find_spec("ai_edge_litert") is not None


@pytest.fixture(scope="module")
def artifacts(models, tmp_path_factory):
    """The conftest's models as .ort (INT8) and, with the extra, .tflite (INT8 float I/O and uint8 I/O)."""
    from elsr.model.checkpoint import load_model

    root = tmp_path_factory.mktemp("mobile")
    model, _ = load_model(models.weights)
    qmodel: QuantELSR = qat_model_from_onnx(models.int8)
    request = ExportRequest(model, qmodel=qmodel)
    out = {"ort": FORMATS["ort"].export(request, root / "int8.ort").files[0]}
    if HAS_LITERT:
        out["tflite"] = FORMATS["tflite"].export(request, root / "int8.tflite").files[0]
        out["tflite_u8"] = FORMATS["tflite"].export(ExportRequest(model, qmodel=qmodel, io="uint8"),
                                                    root / "int8_u8.tflite").files[0]
    assert quant_params(qmodel).config.scale == 4
    return out


def test_rows_for_ort_and_tflite(models, artifacts):
    files = list(artifacts.values())
    result = run_benchmark(BenchConfig(models=files, data=models.hr, size=SIZE, runs=3, warmup=1, threads=[1],
                                       backends=["ort-cpu", "tflite"]))
    rows = {row.name: row for row in result.rows}
    ort_row = rows["ort-cpu:int8.ort"]
    assert ort_row.status == "ok" and ort_row.precision == "int8 qat" and ort_row.gmac_per_s > 0
    assert ort_row.psnr_y == pytest.approx(evaluate(EvalConfig(model=artifacts["ort"], data=models.hr,
                                                               progress=False))["mean"]["model"]["psnr_y"])
    if not HAS_LITERT:  # no .tflite files to time (the skipped row is tested below)
        return
    for key, io in (("tflite", "float32"), ("tflite_u8", "uint8")):
        row = rows[f"tflite:{artifacts[key].name}"]
        assert row.status == "ok" and row.threads == 1, row
        assert row.precision == f"int8 qat, {io} I/O" and row.params == 3469 and row.gmac_per_s > 0
        assert 0 < row.min_ms <= row.median_ms and row.psnr_y is not None
    # the INT8 TFLite scores like onnxruntime's INT8 graph of the same parameters
    assert rows["tflite:int8.tflite"].psnr_y == pytest.approx(ort_row.psnr_y, abs=0.05)
    assert rows["tflite:int8_u8.tflite"].psnr_y == pytest.approx(rows["tflite:int8.tflite"].psnr_y, abs=1e-9)


def test_tflite_row_is_skipped_with_the_hint_without_the_extra(models, artifacts, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name.split(".")[0] == "ai_edge_litert" else real(name, *a, **k))
    tflite_file = artifacts.get("tflite", artifacts["ort"].with_suffix(".tflite"))
    result = run_benchmark(BenchConfig(models=[tflite_file], size=SIZE, runs=2, warmup=0, threads=[1],
                                       backends=["tflite"]))
    assert [(r.name, r.status) for r in result.rows] == \
        [("tflite", "skipped: no TFLite interpreter (pip install 'elsr[tflite]')")]


def test_python_m_benchmarks_takes_ort_and_tflite_files(artifacts, capsys):
    files = [str(p) for p in artifacts.values()]
    assert bench_main(["-q", "--models", *files, "--size", "24x32", "--runs", "2", "--warmup", "0", "--threads", "1",
                       "--backends", "ort-cpu", "tflite"]) == 0
    table = capsys.readouterr().out
    for path in artifacts.values():
        assert f"| {path.name} |" in table
